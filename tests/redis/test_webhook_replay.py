"""The webhook replay guard with a share: one delivery is processed once per account.

Not once per worker process that a replay reaches.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations at runtime.

import aiohttp
import pytest
from fastapi import FastAPI

from tests.conftest import CANARY_KEY
from tests.services import RedisServer
from tests.test_fastapi import PATH, serve_app, signed
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.fastapi import WaveSpeed

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtcmVwbGF5LXRlc3Q="


def worker(emu: Emulator, share: str, seen: list[str]) -> tuple[FastAPI, WaveSpeed]:
    """One worker process's app (two of them in this process stand for two workers)."""
    ws = WaveSpeed(
        webhook_secret=SECRET,
        api_key=CANARY_KEY,
        base_url=emu.base_url,
        share=share,
        on_delivery=lambda pred: seen.append(pred.id),
    )
    app = FastAPI(lifespan=ws.lifespan)
    app.include_router(ws.router)
    return app, ws


async def test_a_captured_delivery_replayed_to_each_worker_is_processed_once(
    redis: RedisServer,
) -> None:
    raw = b'{"id":"tsk-replayed","status":"completed","outputs":["u"]}'
    seen: list[str] = []
    async with Emulator(EmulatorConfig(seed=1, latency=LatencyProfile.fast())) as emu:
        app_a, ws_a = worker(emu, redis.url, seen)
        app_b, ws_b = worker(emu, redis.url, seen)
        headers = signed(SECRET, raw)
        async with (
            serve_app(app_a, ws_a) as url_a,
            serve_app(app_b, ws_b) as url_b,
            aiohttp.ClientSession() as http,
        ):
            for url in (url_a, url_b, url_b, url_a):  # captured, then replayed everywhere
                async with http.post(url + PATH, data=raw, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
    assert seen == ["tsk-replayed"]
    assert ws_a.deliveries_received + ws_b.deliveries_received == 1
    assert ws_a.deliveries_replayed + ws_b.deliveries_replayed == 3
