"""A FastAPI app for the cross-worker webhook test, run by ``uvicorn --workers 2``.

Configured by environment: ``WS_BASE_URL`` (the emulator), ``WS_SHARE`` (Redis),
``WS_PUBLIC_URL`` and ``WS_SECRET``. A delivery that carries ``x-test-task`` is refused
(409) by the worker that created that task, so that it reaches the other worker: the one
that must wake the wait through the share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.conftest import CANARY_KEY
from wavespeed_async import PollConfig
from wavespeed_async.fastapi import WaveSpeed

MODEL = "wavespeed-ai/flux-kontext-dev"

ws = WaveSpeed(
    public_url=os.environ["WS_PUBLIC_URL"],
    webhook_secret=os.environ["WS_SECRET"],
    api_key=CANARY_KEY,
    base_url=os.environ["WS_BASE_URL"],
    share=os.environ["WS_SHARE"],
    # Far longer than the test could wait: only the shared wake-up can end it in time.
    poll=PollConfig(webhook_fallback_s=60.0),
)
app = FastAPI(lifespan=ws.lifespan)
app.include_router(ws.router)


@app.middleware("http")
async def send_deliveries_to_the_other_worker(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    task = request.headers.get("x-test-task")
    if task is None:
        return await call_next(request)
    arrived = time.time()
    if ws.client._waiting().knows(task):  # created here: let the other worker receive it
        return JSONResponse({"pid": os.getpid()}, status_code=409)
    response = await call_next(request)
    response.headers["x-pid"] = str(os.getpid())
    response.headers["x-arrived-at"] = repr(arrived)
    return response


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/generate")
async def generate(request: Request) -> dict[str, object]:
    pred = await ws.run(request, MODEL, {"prompt": "cross-worker"})
    return {"id": pred.id, "outputs": pred.outputs, "pid": os.getpid(), "at": time.time()}
