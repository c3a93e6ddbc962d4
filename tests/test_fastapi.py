"""The FastAPI integration, run for real: uvicorn on 127.0.0.1 and real HTTP requests.

Uvicorn runs with lifespan on, the emulator in process, and requests go over real HTTP, so
that webhooks and disconnects are real too.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations at runtime.

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any

import aiohttp
import anyio
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import (
    Client,
    ClientClosedError,
    FlowLimits,
    PollConfig,
    Prediction,
    TaskFailedError,
    ValidationError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.fastapi import ClientDisconnected, WaveSpeed

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
PATH = "/wavespeed/webhook"


class GenerateBody(BaseModel):
    prompt: str
    sync: bool = False


class Seen:
    """What the app's handlers saw, with events to wait on instead of sleeping."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.first_created = anyio.Event()
        self.disconnects: list[tuple[str, ...]] = []
        self.disconnected = anyio.Event()
        self.deliveries: list[Prediction] = []
        self.clients: list[Client] = []

    def on_task_created(self, pred: Prediction) -> None:
        self.created.append(pred.id)
        self.first_created.set()

    def on_delivery(self, pred: Prediction) -> None:
        self.deliveries.append(pred)


def build_app(ws: WaveSpeed, seen: Seen) -> FastAPI:
    app = FastAPI(lifespan=ws.lifespan)
    app.include_router(ws.router)

    @app.exception_handler(TaskFailedError)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TaskFailedError)
        return JSONResponse({"task_id": exc.task_id, "code": exc.code}, status_code=502)

    @app.post("/generate")
    async def generate(request: Request, body: GenerateBody) -> dict[str, Any]:
        try:
            pred = await ws.run(request, PRO, {"prompt": body.prompt}, sync=body.sync)
        except ClientDisconnected as exc:
            seen.disconnects.append(exc.task_ids)
            seen.disconnected.set()
            raise
        return {"id": pred.id, "status": pred.status, "outputs": pred.outputs}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, Any]:
        # A handler that streams its body itself, before waiting.
        prompt = b"".join([chunk async for chunk in request.stream()]).decode()
        pred = await ws.run(request, PRO, {"prompt": prompt})
        return {"id": pred.id, "status": pred.status}

    @app.get("/client")
    async def which_client(client: Annotated[Client, Depends(ws.get_client)]) -> dict[str, Any]:
        seen.clients.append(client)
        return {"closed": client.closed}

    return app


def make_ws(
    emu: Emulator,
    seen: Seen,
    *,
    webhooks: bool = True,
    poll: PollConfig | None = None,
    **kwargs: Any,
) -> WaveSpeed:
    return WaveSpeed(
        api_key=CANARY_KEY,
        base_url=emu.base_url,
        poll=poll or fast_poll(),
        retry=fast_retry(),
        on_task_created=seen.on_task_created,
        on_delivery=seen.on_delivery,
        public_url="http://placeholder.invalid" if webhooks else None,
        **kwargs,
    )


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test runner owns SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(ws: WaveSpeed, seen: Seen) -> contextlib.AbstractAsyncContextManager[str]:
    """Run the test app on a free port of 127.0.0.1 (lifespan included); yield its URL."""
    return serve_app(build_app(ws, seen), ws)


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI, ws: WaveSpeed) -> AsyncIterator[str]:
    """Run ``app`` (whose lifespan is ``ws``'s) on a free port of 127.0.0.1; yield its URL.

    Webhooks go to that URL when ``ws`` has a public URL.
    """
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it, Nagle + delayed ACKs add ~40 ms to some answers.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if ws.public_url is not None:
        ws.public_url = url
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        http="h11",
        ws="none",
    )
    server = QuietServer(config)
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(5):
                while not server.started:
                    await anyio.sleep(0.005)
            try:
                yield url
            finally:
                server.should_exit = True


@contextlib.asynccontextmanager
async def emulator(**kwargs: Any) -> AsyncIterator[Emulator]:
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast(), **kwargs)
    async with Emulator(config) as emu:
        yield emu


def signed(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a delivery, signed independently of the library."""
    ts = int(time.time()) if timestamp is None else timestamp
    wid = "msg_test"
    key = secret.removeprefix("whsec_").encode()
    digest = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "webhook-id": wid,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v3,{digest}",
    }


async def account_secret(emu: Emulator) -> str:
    async with Client(CANARY_KEY, base_url=emu.base_url) as client:
        return await client.webhook_secret()


async def generate(http: aiohttp.ClientSession, url: str, prompt: str, **extra: Any) -> Any:
    async with http.post(f"{url}/generate", json={"prompt": prompt, **extra}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_generate_completes_by_webhook_without_polling() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen)  # fallback polls every 10 s (the default): none expected
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            started = anyio.current_time()
            result = await generate(http, url, "a lighthouse at dusk")
            elapsed = anyio.current_time() - started
        stats = emu.stats()
    assert result["status"] == "completed" and len(result["outputs"]) == 1
    task = stats.tasks[result["id"]]
    assert task.webhook_url == f"{url}{PATH}"
    assert stats.tasks_created == 1
    assert stats.webhook_deliveries == 1 and stats.webhook_failures == 0
    assert stats.polls_per_task.get(result["id"], 0) <= 1
    assert ws.deliveries_received == 1 and ws.deliveries_rejected == 0
    assert [p.id for p in seen.deliveries] == [result["id"]]
    # Woken by the delivery, not by the 10 s fallback poll.
    assert elapsed < 5
    assert task.finished_at is not None and task.first_seen_finished_at is not None
    assert task.first_seen_finished_at - task.finished_at < 1.0


async def test_concurrent_handlers_share_one_client_and_its_limits() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen, limits=FlowLimits(max_in_flight=2))
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            results: list[Any] = []

            async def one(n: int) -> None:
                results.append(await generate(http, url, f"[latency:40] picture {n}"))

            async with anyio.create_task_group() as tg:
                for n in range(12):
                    tg.start_soon(one, n)
            client = ws.client
            assert client.tasks_created == 12
            assert client.flow.in_flight.borrowed_tokens == 0
        stats = emu.stats()
    assert sorted(r["status"] for r in results) == ["completed"] * 12
    assert stats.tasks_created == 12 and stats.webhook_deliveries == 12
    # One Client's in-flight cap held across all handlers.
    assert stats.max_running <= 2
    assert stats.polls_total <= 2 * 12


async def test_dependency_hands_out_the_lifespan_client_and_shutdown_closes_it() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen)
        with pytest.raises(ClientClosedError, match="lifespan"):
            _ = ws.client
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(f"{url}/client") as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"closed": False}
            assert "open" in repr(ws)
        assert len(seen.clients) == 2 and seen.clients[0] is seen.clients[1]
        assert seen.clients[0].closed
        with pytest.raises(ClientClosedError):
            _ = ws.client
        # The app can start again (a new Client) after a shutdown.
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            async with http.get(f"{url}/client") as resp:
                assert resp.status == 200
        assert seen.clients[2] is not seen.clients[0]


async def test_forged_stale_and_malformed_deliveries_get_4xx_and_wake_nothing() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen, max_body_bytes=4096)
        secret = await account_secret(emu)
        body = json.dumps({"id": "a" * 32, "status": "completed", "outputs": []}).encode()
        good = signed(secret, body)
        cases: list[tuple[str, dict[str, str], bytes]] = [
            ("forged", {**good, "webhook-signature": "v3," + "0" * 64}, body),
            ("wrong secret", signed("whsec_not-the-secret", body), body),
            ("stale", signed(secret, body, timestamp=int(time.time()) - 3600), body),
            ("future", signed(secret, body, timestamp=int(time.time()) + 3600), body),
            ("body changed", good, body.replace(b"completed", b"failed")),
            ("no signature", {k: v for k, v in good.items() if k != "webhook-signature"}, body),
            ("no id", {k: v for k, v in good.items() if k != "webhook-id"}, body),
            ("no timestamp", {k: v for k, v in good.items() if k != "webhook-timestamp"}, body),
            ("no headers", {}, body),
            ("bad timestamp", {**good, "webhook-timestamp": "soon"}, body),
            ("huge timestamp", {**good, "webhook-timestamp": "9" * 400}, body),
            ("not a prediction", signed(secret, b"[1, 2]"), b"[1, 2]"),
            ("not json", signed(secret, b"\xff\xfe"), b"\xff\xfe"),
        ]
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            for name, headers, data in cases:
                async with http.post(f"{url}{PATH}", data=data, headers=headers) as resp:
                    assert 400 <= resp.status < 500, (name, resp.status)
                    assert "detail" in await resp.json()
            big = b"{" + b" " * 5000 + b"}"
            async with http.post(f"{url}{PATH}", data=big, headers=signed(secret, big)) as resp:
                assert resp.status == 413
            # Genuine deliveries are acknowledged, whether the task is known here or not,
            # and however many times they come; a replay is not processed again.
            for _ in range(2):
                async with http.post(f"{url}{PATH}", data=body, headers=good) as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"received": "a" * 32}
            client = ws.client
        assert ws.deliveries_rejected == len(cases) + 1
        assert ws.deliveries_received == 1
        assert ws.deliveries_replayed == 1
        assert client.deliveries == 1
        assert len(seen.deliveries) == 1


async def test_duplicate_and_late_deliveries_do_not_disturb_later_requests() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen)
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            first = await generate(http, url, "first")
            secret = await account_secret(emu)
            # Replay the finished task's delivery, as a retrying sender would.
            body = json.dumps({"id": first["id"], "status": "completed", "outputs": []}).encode()
            for _ in range(3):
                headers = signed(secret, body)
                async with http.post(f"{url}{PATH}", data=body, headers=headers) as resp:
                    assert resp.status == 200
            second = await generate(http, url, "second")
        stats = emu.stats()
    assert second["status"] == "completed" and second["id"] != first["id"]
    assert second["outputs"] and stats.tasks_created == 2
    assert stats.polls_total <= 2


async def test_a_delivery_that_never_comes_is_caught_by_fallback_polling() -> None:
    seen = Seen()
    async with emulator(webhook_failure_rate=1.0) as emu:
        poll = PollConfig(
            expected_duration_s=0.03,
            min_interval_s=0.005,
            max_interval_s=0.05,
            webhook_fallback_s=0.05,
        )
        ws = make_ws(emu, seen, poll=poll)
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            result = await generate(http, url, "dropped delivery")
        stats = emu.stats()
    assert result["status"] == "completed"
    assert stats.webhook_failures == 1 and stats.webhook_deliveries == 0
    assert stats.polls_per_task[result["id"]] >= 1


async def test_a_wrong_secret_given_rejects_deliveries_and_polling_still_finishes() -> None:
    seen = Seen()
    async with emulator() as emu:
        poll = PollConfig(expected_duration_s=0.03, webhook_fallback_s=0.05)
        ws = make_ws(emu, seen, poll=poll, webhook_secret="whsec_wrong")
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            result = await generate(http, url, "wrong secret")
        stats = emu.stats()
    assert result["status"] == "completed"
    assert stats.webhook_failures == 1  # our 401 counts as a failed delivery
    assert ws.deliveries_rejected == 1 and not seen.deliveries


async def test_a_handler_that_streams_its_own_body_still_waits_normally() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen)
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/raw", data=b"streamed prompt") as resp:
                assert resp.status == 200, await resp.text()
                result = await resp.json()
        stats = emu.stats()
    assert result["status"] == "completed"
    assert stats.tasks[result["id"]].prompt == "streamed prompt"
    assert not seen.disconnects


async def test_task_failure_reaches_the_app_handler_unwrapped() -> None:
    seen = Seen()
    async with emulator() as emu:
        ws = make_ws(emu, seen)
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            body = {"prompt": "[fail:1200] not allowed"}
            async with http.post(f"{url}/generate", json=body) as resp:
                assert resp.status == 502
                answer = await resp.json()
    assert answer["code"] == 1200 and answer["task_id"] == seen.created[0]


@pytest.mark.parametrize("middleware", [False, True], ids=["plain", "with-http-middleware"])
async def test_a_disconnecting_client_cancels_its_wait_without_leaking(
    caplog: pytest.LogCaptureFixture, middleware: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="wavespeed_async.fastapi")
    seen = Seen()
    async with emulator() as emu:
        # No webhook: the wait polls often, so a wait that kept going would show.
        ws = make_ws(emu, seen, webhooks=False)
        app = build_app(ws, seen)
        if middleware:
            # BaseHTTPMiddleware wraps `receive`: no false disconnect, a real one still seen.
            @app.middleware("http")
            async def passthrough(
                request: Request, call_next: Callable[[Request], Awaitable[Response]]
            ) -> Response:
                return await call_next(request)

        async with serve_app(app, ws) as url, aiohttp.ClientSession() as http:
            port = int(url.rsplit(":", 1)[1])
            body = json.dumps({"prompt": "[latency:60000] a slow one"}).encode()
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(
                    b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )
                with anyio.fail_after(5):
                    await seen.first_created.wait()
                    task_id = seen.created[0]
                    while emu.stats().polls_per_task.get(task_id, 0) < 2:
                        await anyio.sleep(0.005)
            # The connection is closed: the handler's wait must end.
            with anyio.fail_after(5):
                await seen.disconnected.wait()
            polls = emu.stats().polls_per_task[task_id]
            client = ws.client
            assert client.flow.in_flight.borrowed_tokens == 0
            await anyio.sleep(0.25)  # five of the longest poll intervals
            assert emu.stats().polls_per_task[task_id] == polls
            # The task still runs on the server; the Client still serves the next request.
            record = emu.task(task_id)
            assert record is not None and record.status in ("created", "processing")
            after = await generate(http, url, "the next request")
            assert after["status"] == "completed"
    assert seen.disconnects == [(task_id,)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "wavespeed_async.fastapi"]
    assert any(task_id in m and "keeps running" in m for m in warnings)
    # The 499 goes nowhere, quietly: no traceback from the app or the server.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_sync_mode_timeout_continues_by_polling_with_one_task() -> None:
    seen = Seen()
    async with emulator(sync_wait_s=0.05) as emu:
        ws = make_ws(emu, seen)
        async with serve(ws, seen) as url, aiohttp.ClientSession() as http:
            result = await generate(http, url, "[latency:300] held then polled", sync=True)
        stats = emu.stats()
    assert result["status"] == "completed" and result["outputs"]
    assert stats.tasks_created == 1 and stats.submits_received == 1
    assert stats.duplicate_prompts == []
    assert stats.sync_timeouts == 1
    assert stats.polls_per_task[result["id"]] >= 1
    assert stats.tasks[result["id"]].webhook_url is None  # sync mode goes without a webhook
    assert seen.created == [result["id"]]


def test_the_webhook_path_must_be_a_path() -> None:
    with pytest.raises(ValidationError, match="webhook_path"):
        WaveSpeed(webhook_path="wavespeed/webhook")


def test_repr_shows_the_state_and_never_a_secret_or_key() -> None:
    ws = WaveSpeed(
        public_url="https://app.example/", webhook_secret="whsec_topsecret", api_key=CANARY_KEY
    )
    text = repr(ws)
    assert "not open" in text and "https://app.example/wavespeed/webhook" in text
    assert "topsecret" not in text and CANARY_KEY not in text
    assert WaveSpeed().webhook_url is None
