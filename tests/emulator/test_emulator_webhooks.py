"""Webhook deliveries, checked with an independent HMAC computation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

from .helpers import manual, result, submit, until

pytestmark = pytest.mark.anyio


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hang = False
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        self.arrived.set()
        if self.hang:
            await asyncio.sleep(3600)
        return web.Response(status=self.status)


@asynccontextmanager
async def receiver(status: int = 200) -> AsyncIterator[Receiver]:
    rec = Receiver(status)
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


def independent_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = secret[len("whsec_") :].encode()
    message = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v3," + hmac.new(key, message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["webhook-signature"])


async def test_webhook_delivery_is_signed(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(seed=5)
    async with emu, receiver() as rec:
        status, body = await submit(
            session, emu, {"prompt": "hook [latency:500]"}, params={"webhook": rec.url}
        )
        assert status == 200
        tid = body["data"]["id"]
        await emu.advance(0.2)
        assert rec.deliveries == []
        await emu.advance(0.5)
        assert len(rec.deliveries) == 1
        headers, raw = rec.deliveries[0]
        async with session.get(f"{emu.base_url}/api/v3/webhook/secret") as r:
            secret = (await r.json())["data"]["secret"]
        assert independent_signature(secret, headers, raw)
        assert not independent_signature(secret, headers, raw + b" ")
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        prediction: dict[str, Any] = msgspec.json.decode(raw)
        assert "code" not in prediction or prediction["code"] is None  # bare, no envelope
        assert prediction["id"] == tid
        assert prediction["status"] == "completed"
        assert len(prediction["outputs"]) == 1
        stats = emu.stats()
        assert stats.webhook_deliveries == 1
        record = stats.tasks[tid]
        assert record.webhook_deliveries == 1
        assert record.first_seen_finished_at == record.finished_at
        # The client-side verifier agrees.
        from wavespeed_async._core.webhooks import verify_webhook

        assert verify_webhook(secret, headers, raw).id == tid


async def test_webhook_for_failed_task(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu, receiver() as rec:
        await submit(session, emu, {"prompt": "[fail:1200]"}, params={"webhook": rec.url})
        await emu.advance(1)
        ((_, raw),) = rec.deliveries
        prediction = msgspec.json.decode(raw)
        assert prediction["status"] == "failed"
        assert prediction["code"] == 1200


async def test_webhook_failures_recorded(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu, receiver(status=500) as rec:
        _, body = await submit(session, emu, {"prompt": "x"}, params={"webhook": rec.url})
        await emu.advance(1)
        assert len(rec.deliveries) == 1  # never retried
        stats = emu.stats()
        assert stats.webhook_failures == 1
        assert stats.tasks[body["data"]["id"]].first_seen_finished_at is None


async def test_webhook_failure_rate_drops(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(webhook_failure_rate=1.0)
    async with emu, receiver() as rec:
        await submit(session, emu, {"prompt": "x"}, params={"webhook": rec.url})
        await emu.advance(1)
        assert rec.deliveries == []
        assert emu.stats().webhook_failures == 1


async def test_webhook_with_real_clock(session: aiohttp.ClientSession) -> None:
    async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu, receiver() as rec:
        _, body = await submit(session, emu, {"prompt": "rt"}, params={"webhook": rec.url})
        await asyncio.wait_for(rec.arrived.wait(), 5)
        await until(lambda: emu.stats().webhook_deliveries == 1)
        assert (await result(session, emu, body["data"]["id"]))["status"] == "completed"


@pytest.mark.parametrize("hook", ["ftp://x/y", "not a url"])
async def test_bad_webhook_url(session: aiohttp.ClientSession, hook: str) -> None:
    emu, _ = manual()
    async with emu:
        status, body = await submit(session, emu, {"prompt": "x"}, params={"webhook": hook})
        assert status == 400
        assert body["message"].startswith("webhook")


async def test_base64_with_webhook_is_400(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        status, body = await submit(
            session,
            emu,
            {"prompt": "x", "enable_base64_output": True},
            params={"webhook": "http://127.0.0.1:9/hook"},
        )
        assert status == 400
        assert "enable_base64_output" in body["message"]
        assert emu.stats().tasks_created == 0


async def test_close_cancels_pending_deliveries(session: aiohttp.ClientSession) -> None:
    emu, clock = manual()
    started = time.monotonic()
    async with receiver() as rec:
        rec.hang = True
        async with emu:
            await submit(session, emu, {"prompt": "x"}, params={"webhook": rec.url})
            clock.advance(1)
            assert emu.stats().tasks_completed == 1  # runs what became due: the delivery
            await asyncio.wait_for(rec.arrived.wait(), 5)
        assert time.monotonic() - started < 5
        stats = emu.stats()
        assert stats.webhook_deliveries == 0
        assert stats.webhook_failures == 0
