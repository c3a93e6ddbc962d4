"""Webhook deliveries, checked with an independent HMAC computation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
from aiohttp import web

from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.emulator._delivery import is_loopback

from .helpers import DEV, call, in_process, manual, result, submit, until

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


class PostRecorder:
    """Stands in for ``aiohttp.ClientSession.post``: records the URL, then fails."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, **kwargs: Any) -> Any:  # not bound: an instance attribute
        self.urls.append(url)
        raise aiohttp.ClientOSError(111, f"Connect call failed to {url}")


WEBHOOK_LOGGER = "wavespeed_async.emulator"


async def test_webhooks_go_only_to_loopback_hosts_by_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    posts = PostRecorder()
    monkeypatch.setattr(aiohttp.ClientSession, "post", posts)
    caplog.set_level(logging.INFO, logger=WEBHOOK_LOGGER)
    emu, _ = in_process()
    async with emu:
        hook = "https://user:pw@myapp.example.com/hook?token=s3cret"
        status, body = await call(
            emu, "POST", f"/api/v3/{DEV}?webhook={quote(hook, safe='')}", {"prompt": "x"}
        )
        assert status == 200
        await emu.advance(1)
        tid = body["data"]["id"]
    assert posts.urls == []  # nothing was sent
    stats = emu.stats()
    assert (stats.webhook_refused, stats.webhook_failures, stats.webhook_deliveries) == (1, 1, 0)
    assert stats.tasks[tid].webhook_failures == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert tid in line
    assert "myapp.example.com" in line
    assert "not a loopback address" in line
    assert "--webhook-any-host" in line
    assert "s3cret" not in caplog.text
    assert "pw" not in line.replace("webhook_any_host", "")


async def test_webhook_any_host_delivers_anywhere_and_a_failure_is_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    posts = PostRecorder()
    monkeypatch.setattr(aiohttp.ClientSession, "post", posts)
    caplog.set_level(logging.INFO, logger=WEBHOOK_LOGGER)
    emu, _ = in_process(webhook_any_host=True)
    async with emu:
        hook = "https://myapp.example.com/hook?token=s3cret"
        _, body = await call(
            emu, "POST", f"/api/v3/{DEV}?webhook={quote(hook, safe='')}", {"prompt": "x"}
        )
        await emu.advance(1)
    assert posts.urls == [hook]
    stats = emu.stats()
    assert (stats.webhook_refused, stats.webhook_failures) == (0, 1)
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    line = warning.getMessage()
    assert body["data"]["id"] in line
    assert "ClientOSError" in line
    assert "s3cret" not in caplog.text


async def test_a_failed_loopback_delivery_logs_the_status(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=WEBHOOK_LOGGER)
    emu, _ = manual()
    async with emu, receiver(status=500) as rec:
        _, body = await submit(session, emu, {"prompt": "x"}, params={"webhook": rec.url})
        await emu.advance(1)
    [warning] = caplog.records
    assert body["data"]["id"] in warning.getMessage()
    assert "HTTP 500" in warning.getMessage()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - a host name to judge, not a bind
        ("10.0.0.1", False),
        ("myapp.example.com", False),
        ("localhost.example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_an_in_process_emulator_delivers_webhooks_over_loopback() -> None:
    emu, _ = in_process(seed=5)
    async with emu, receiver() as rec:
        _, body = await call(
            emu, "POST", f"/api/v3/{DEV}?webhook={quote(rec.url, safe='')}", {"prompt": "hook"}
        )
        await emu.advance(1)
        ((headers, raw),) = rec.deliveries
        assert independent_signature(emu.webhook_secret, headers, raw)
        prediction = msgspec.json.decode(raw)
        assert prediction["id"] == body["data"]["id"]
        assert prediction["outputs"][0].startswith("http://emulator.invalid/media/outputs/")


async def test_webhook_ids_differ_between_emulators_with_one_seed() -> None:
    ids = []
    for _ in range(2):
        emu, _ = in_process(seed=5)
        async with emu, receiver() as rec:
            await call(
                emu, "POST", f"/api/v3/{DEV}?webhook={quote(rec.url, safe='')}", {"prompt": "i"}
            )
            await emu.advance(1)
            ids.append(rec.deliveries[0][0]["webhook-id"])
    assert ids[0] != ids[1]
