"""A FastAPI app for the cross-worker event-stream test, run by ``uvicorn --workers 2``.

Configured by environment: ``WS_BASE_URL`` (the emulator), ``WS_SHARE`` (Redis),
``WS_PUBLIC_URL`` and ``WS_SECRET``. ``POST /submit`` creates a task and answers at once,
with the worker's pid; a request with ``x-avoid-pid`` is refused (409) by that worker, so
that the test can send the event stream's request to the other one.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.conftest import CANARY_KEY
from wavespeed_async.fastapi import WaveSpeed

MODEL = "wavespeed-ai/flux-kontext-dev"

ws = WaveSpeed(
    public_url=os.environ["WS_PUBLIC_URL"],
    webhook_secret=os.environ["WS_SECRET"],
    api_key=CANARY_KEY,
    base_url=os.environ["WS_BASE_URL"],
    share=os.environ["WS_SHARE"],
)
app = FastAPI(lifespan=ws.lifespan)
app.include_router(ws.router)


@app.middleware("http")
async def to_the_other_worker(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if request.headers.get("x-avoid-pid") == str(os.getpid()):
        return JSONResponse({"pid": os.getpid()}, status_code=409)
    response = await call_next(request)
    response.headers["x-pid"] = str(os.getpid())
    return response


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/submit")
async def submit(prompt: str) -> dict[str, object]:
    pred = await ws.client.submit(MODEL, {"prompt": prompt}, webhook=ws.webhook_url)
    return {"id": pred.id, "pid": os.getpid()}
