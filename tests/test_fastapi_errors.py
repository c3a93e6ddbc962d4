"""The FastAPI error mapping, under real uvicorn on 127.0.0.1.

Each error a handler lets escape answers the status and JSON body a caller can act on,
never a bare 500.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations at runtime.

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiohttp
import pytest
from fastapi import Depends, FastAPI, Request

from tests.conftest import CANARY_KEY, fast_poll
from tests.test_fastapi import serve_app
from wavespeed_async import (
    Client,
    FluxKontextProTextToImage,
    RetryConfig,
    SubmissionOutcomeUnknown,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.fastapi import WaveSpeed, install_error_handlers

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
#: One attempt per request: a 429 reaches the handler instead of being waited out.
ONCE = RetryConfig(max_attempts=1, max_submit_attempts=1, backoff_base_s=0.001, max_backoff_s=0.01)


def build(ws: WaveSpeed) -> FastAPI:
    app = FastAPI(lifespan=ws.lifespan)
    app.include_router(ws.router)
    install_error_handlers(app)
    ClientDep = Annotated[Client, Depends(ws.get_client)]

    @app.post("/generate")
    async def generate(request: Request, prompt: str, timeout: float = 30) -> dict[str, Any]:
        pred = await ws.run(request, PRO, {"prompt": prompt}, timeout=timeout)
        return {"id": pred.id}

    @app.post("/typed")
    async def typed(aspect_ratio: str, client: ClientDep) -> dict[str, Any]:
        task = FluxKontextProTextToImage(prompt="x", aspect_ratio=aspect_ratio)
        return {"id": (await client.run(task)).id}

    @app.get("/tasks/{task_id}")
    async def task(task_id: str, client: ClientDep) -> dict[str, Any]:
        return {"id": (await client.get_result(task_id)).id}

    @app.post("/lost")
    async def lost() -> dict[str, Any]:
        raise SubmissionOutcomeUnknown(
            "the answer was lost", model=PRO, input={}, cause_kind="reset"
        )

    return app


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Emulator]]:
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast(), api_key=CANARY_KEY)
    async with Emulator(config) as emu:
        ws = WaveSpeed(api_key=CANARY_KEY, base_url=emu.base_url, poll=fast_poll(), retry=ONCE)
        async with serve_app(build(ws), ws) as url:
            yield url, emu


async def call(url: str, method: str, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url + path) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_a_failed_task_answers_422_or_502_with_its_id_and_reason(
    served: tuple[str, Emulator],
) -> None:
    url, emu = served
    status, body, _ = await call(url, "POST", "/generate?prompt=[fail:1200] no")
    assert status == 422, body
    assert body["error"] == "task_failed" and body["code"] == 1200
    assert body["task_id"] in emu.stats().tasks and "1200" in body["detail"]
    status, body, _ = await call(url, "POST", "/generate?prompt=[fail:5000] oops")
    assert status == 502 and body["code"] == 5000 and body["task_id"] in emu.stats().tasks


async def test_an_unknown_id_answers_404(served: tuple[str, Emulator]) -> None:
    url, _ = served
    status, body, _ = await call(url, "GET", f"/tasks/{'0' * 32}")
    assert status == 404 and body["error"] == "not_found"


async def test_bad_input_answers_422_naming_the_field(served: tuple[str, Emulator]) -> None:
    url, emu = served
    status, body, _ = await call(url, "POST", "/typed?aspect_ratio=7:5")
    assert status == 422 and body["error"] == "invalid_input"
    assert body["field"] == "aspect_ratio" and body["task_id"] is None
    assert emu.stats().submits_received == 0


async def test_a_rate_limit_answers_429_with_retry_after(served: tuple[str, Emulator]) -> None:
    url, emu = served
    emu.force_fault("rate_limit", on="submit")
    status, body, headers = await call(url, "POST", "/generate?prompt=a fox")
    assert status == 429 and body["error"] == "rate_limited"
    assert headers["Retry-After"] == "1"  # the emulator's own hint


async def test_a_deadline_answers_504_with_the_task_id(served: tuple[str, Emulator]) -> None:
    url, emu = served
    status, body, _ = await call(url, "POST", "/generate?prompt=slow [latency:5000]&timeout=0.1")
    assert status == 504 and body["error"] == "timeout"
    assert emu.task(body["task_id"]) is not None  # the task still runs: come back for it


async def test_an_unknown_submit_outcome_answers_502(served: tuple[str, Emulator]) -> None:
    url, _ = served
    status, body, _ = await call(url, "POST", "/lost")
    assert status == 502 and body["error"] == "outcome_unknown"


async def test_a_refused_key_answers_503_without_details_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="wavespeed_async.fastapi")
    config = EmulatorConfig(latency=LatencyProfile.fast(), api_key="the-right-key")
    async with Emulator(config) as emu:
        ws = WaveSpeed(api_key=CANARY_KEY, base_url=emu.base_url, poll=fast_poll(), retry=ONCE)
        async with serve_app(build(ws), ws) as url:
            status, body, _ = await call(url, "POST", "/generate?prompt=a fox")
    assert status == 503 and body["error"] == "unavailable"
    assert "key" not in body["detail"] and CANARY_KEY not in str(body)
    assert any("refused this app's key" in r.getMessage() for r in caplog.records)
    assert all(CANARY_KEY not in r.getMessage() for r in caplog.records)
