"""The emulator: an aiohttp server that behaves like the WaveSpeed v3 REST API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import logging
import math
import random
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

import aiohttp
import msgspec
from aiohttp import web

from wavespeed_async._specs import MODEL_SPECS, check_input
from wavespeed_async._webhooks import sign_webhook
from wavespeed_async.emulator._config import (
    EmulatorConfig,
    FaultRates,
    ManualClock,
    RealClock,
)
from wavespeed_async.emulator._png import ImageCache, output_size
from wavespeed_async.emulator._stats import EmulatorStats, TaskRecord

__all__ = ["Emulator"]

logger = logging.getLogger("wavespeed_async.emulator")

_encode: Final = msgspec.json.encode
_RATE_WINDOW_S: Final = 60.0
_DIRECTIVE_RE: Final = re.compile(r"\[(fail|latency|nsfw)(?::([^\]]*))?\]", re.IGNORECASE)
_FILENAME_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_RANDOM_FAIL_CODES: Final = ((0.6, 5000), (0.85, 1403), (1.0, 5003))
_ERROR_TEXT: Final = {
    1200: "content moderation: the request was flagged",
    1400: "missing parameter",
    1401: "invalid parameter",
    1402: "input media URL is unreachable",
    1403: "task failed",
    1405: "task failed",
    5000: "internal error",
    5003: "service unavailable",
    5004: "timeout",
}
_BAD_GATEWAY_HTML: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
# Fault field name -> (kind as stats report it, phase on submits).
_FAULTS: Final[dict[str, tuple[str, str]]] = {
    "rate_limit": ("rate_limit", "before"),
    "server_error_before": ("server_error", "before"),
    "server_error_after": ("server_error", "after"),
    "reset_before": ("reset", "before"),
    "reset_after": ("reset", "after"),
    "malformed": ("malformed", "after"),
    "stall_before": ("stall", "before"),
    "stall_after": ("stall", "after"),
}
_POLL_ALIASES: Final = {
    "server_error": "server_error_before",
    "reset": "reset_before",
    "stall": "stall_before",
}

_Wake = Literal["done", "timeout", "closing"]


class _Task:
    """Server-side state of one task; kept small (benchmarks create tens of thousands)."""

    __slots__ = (
        "base64",
        "code",
        "created_at",
        "deleted",
        "deliveries",
        "delivery_failures",
        "finished_at",
        "first_seen",
        "height",
        "id",
        "inference_s",
        "model",
        "nsfw",
        "num_images",
        "polls",
        "prompt",
        "queue_s",
        "seed",
        "started_at",
        "status",
        "waiters",
        "webhook_url",
        "width",
    )

    def __init__(self, task_id: str, model: str, prompt: str, created_at: float) -> None:
        self.id = task_id
        self.model = model
        self.prompt = prompt
        self.created_at = created_at
        self.status = "created"
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.first_seen: float | None = None
        self.polls = 0
        self.deliveries = 0
        self.delivery_failures = 0
        self.code: int | None = None
        self.num_images = 1
        self.width = 1024
        self.height = 1024
        self.seed = 0
        self.nsfw = False
        self.base64 = False
        self.deleted = False
        self.queue_s = 0.0
        self.inference_s = 0.0
        self.webhook_url: str | None = None
        self.waiters: list[asyncio.Future[_Wake]] | None = None

    @property
    def visible_status(self) -> str:
        return "deleted" if self.deleted else self.status

    def record(self) -> TaskRecord:
        return TaskRecord(
            id=self.id,
            model=self.model,
            prompt=self.prompt,
            status=self.visible_status,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            first_seen_finished_at=self.first_seen,
            polls=self.polls,
            webhook_deliveries=self.deliveries,
            webhook_failures=self.delivery_failures,
            code=self.code if self.status == "failed" else None,
            error=_error_text(self.code) if self.status == "failed" else "",
            num_images=self.num_images,
            width=self.width,
            height=self.height,
            seed=self.seed,
            webhook_url=self.webhook_url,
        )


@dataclass
class _Upload:
    data: bytes
    content_type: str


def _error_text(code: int | None) -> str:
    return _ERROR_TEXT.get(code or 0, "task failed")


def _iso(wall: float) -> str:
    ns = int(wall * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def _envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_encode(body), content_type="application/json", headers=headers
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json(status, {"code": status, "message": message, "data": None}, headers)


def _abort(request: web.Request) -> web.Response:
    """Reset the TCP connection (RST, no answer); the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)


def _parse_directives(prompt: str) -> tuple[int | None, float | None, bool]:
    """``(fail code, forced latency in seconds, nsfw)`` from the prompt's directives."""
    fail: int | None = None
    latency: float | None = None
    nsfw = False
    for m in _DIRECTIVE_RE.finditer(prompt):
        name, arg = m.group(1).lower(), m.group(2)
        if name == "fail":
            fail = 5000
            if arg is not None and arg.strip().isdigit():
                fail = int(arg.strip())
        elif name == "latency" and arg is not None:
            with contextlib.suppress(ValueError):
                value = float(arg.strip())
                if math.isfinite(value) and value >= 0:
                    latency = value / 1000.0
        elif name == "nsfw":
            nsfw = True
    return fail, latency, nsfw


class Emulator:
    """A local WaveSpeed v3 API, for tests and benchmarks.

    Use as ``async with Emulator(config) as emu:`` and point a client at ``emu.base_url``.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._manual: ManualClock | None = self.config.clock
        self._clock: ManualClock | RealClock = self._manual or RealClock()
        self._epoch = time.time() - self._clock.now()
        seed = self.config.seed
        self._rng_ids = random.Random(f"{seed}:ids")
        self._rng_tasks = random.Random(f"{seed}:tasks")
        self._rng_faults = {
            "submit": random.Random(f"{seed}:submit-faults"),
            "poll": random.Random(f"{seed}:poll-faults"),
        }
        self._rng_webhooks = random.Random(f"{seed}:webhooks")
        digest = hashlib.sha256(f"wavespeed-emulator-secret:{seed}".encode()).hexdigest()
        self.webhook_secret = "whsec_" + digest[:32]
        self._forced: dict[str, deque[str]] = {"submit": deque(), "poll": deque()}
        self._tasks: dict[str, _Task] = {}
        self._uploads: dict[str, _Upload] = {}
        self._images = ImageCache(self.config.image_cache_bytes)
        self._balance = float(self.config.initial_balance)
        # Scheduler: (due time, sequence, callback(due time)).
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pending: set[asyncio.Future[_Wake]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._waiting: deque[_Task] = deque()
        self._running = 0
        self._window: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._in_flight = 0
        self._code_draw = 0.0
        self._reset_counters()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        host = self._host
        if host in ("", "0.0.0.0"):  # noqa: S104 - only naming the wildcard
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        app = web.Application(
            middlewares=[self._middleware],
            client_max_size=max(16 * 1024 * 1024, self.config.max_upload_bytes + 1024 * 1024),
        )
        r = app.router
        r.add_get("/_emulator/stats", self._h_stats)
        r.add_post("/_emulator/reset", self._h_reset)
        r.add_get("/api/v3/balance", self._h_balance)
        r.add_get("/api/v3/webhook/secret", self._h_secret)
        r.add_post("/api/v3/media/upload/binary", self._h_upload)
        r.add_post("/api/v3/predictions/delete", self._h_delete)
        r.add_get("/api/v3/predictions/{id}/result", self._h_poll)
        r.add_get("/api/v3/predictions/{id}", self._h_poll)
        r.add_post("/api/v3/{model:.+}", self._h_submit)
        r.add_get("/media/outputs/{id}/{name}", self._h_output)
        r.add_get("/media/uploads/{token}/{name}", self._h_upload_file)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        family, _, _, _, addr = socket.getaddrinfo(
            self._host or None, self._requested_port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            site = web.SockSite(runner, sock, backlog=4096)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = sock.getsockname()[1]
        self._arm_timer()
        logger.info("emulator listening on %s", self.base_url)

    async def close(self) -> None:
        """Stop serving; cancel held answers and webhook deliveries."""
        if self._runner is None:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut in list(self._pending):
            if not fut.done():
                fut.set_result("closing")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        runner, self._runner = self._runner, None
        await runner.cleanup()
        if self._session is not None:
            await self._session.close()
            self._session = None
        logger.info("emulator stopped")

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ test controls

    def force_fault(
        self, kind: str, *, on: Literal["submit", "poll"] = "submit", times: int = 1
    ) -> None:
        """Give the next ``times`` matching requests this fault (a ``FaultRates`` name).

        On polls the base names ``server_error``, ``reset`` and ``stall`` are accepted too.
        """
        if on not in self._forced:
            raise ValueError(f"on: {on!r}; allowed: 'submit' or 'poll'")
        if on == "poll":
            kind = _POLL_ALIASES.get(kind, kind)
        if kind not in _FAULTS:
            raise ValueError(f"kind: {kind!r} is unknown; allowed: one of {', '.join(_FAULTS)}")
        if times < 0:
            raise ValueError("times: must be >= 0")
        self._forced[on].extend([kind] * times)

    def task(self, task_id: str) -> TaskRecord | None:
        """The server-side record of a task, or ``None``."""
        self._run_due()
        task = self._tasks.get(task_id)
        return task.record() if task is not None else None

    @property
    def balance(self) -> float:
        return self._balance

    async def advance(self, seconds: float) -> None:
        """With a ``ManualClock``: move time, run what became due, finish webhook deliveries."""
        clock = self._manual
        if clock is None:
            raise RuntimeError("advance() needs EmulatorConfig(clock=ManualClock())")
        if seconds < 0:
            raise ValueError(f"seconds: {seconds} is negative; allowed: >= 0")
        target = clock.now() + seconds
        while self._heap and self._heap[0][0] <= target:
            due = self._heap[0][0]
            if due > clock.now():
                clock.advance(due - clock.now())
            self._run_due()
        if target > clock.now():
            clock.advance(target - clock.now())
        # Let woken handlers answer, then wait for the deliveries that became due.
        for _ in range(3):
            await asyncio.sleep(0)
        if self._background:
            await asyncio.wait(list(self._background), timeout=30.0)

    def reset_stats(self) -> None:
        """Zero the counters; ``stats().tasks`` then lists only tasks created afterwards."""
        self._reset_counters()
        for task in self._tasks.values():
            task.polls = 0
            task.deliveries = 0
            task.delivery_failures = 0

    def _reset_counters(self) -> None:
        self._submits_received = 0
        self._tasks_per_prompt: dict[str, int] = {}
        self._stat_tasks: dict[str, _Task] = {}
        self._polls_total = 0
        self._requests_total = 0
        self._max_concurrent = self._in_flight
        self._faults: dict[str, dict[str, int]] = {}
        self._rate_limited = 0
        self._max_running = self._running
        self._completed = 0
        self._failed = 0
        self._webhook_ok = 0
        self._webhook_failed = 0
        self._sync_timeouts = 0
        self._media_requests = 0
        self._media_with_auth = 0
        self._upload_count = 0

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        self._run_due()
        return EmulatorStats(
            submits_received=self._submits_received,
            tasks_created=len(self._stat_tasks),
            tasks_per_prompt=dict(self._tasks_per_prompt),
            duplicate_prompts=[p for p, n in self._tasks_per_prompt.items() if n > 1],
            polls_per_task={t.id: t.polls for t in self._tasks.values() if t.polls},
            polls_total=self._polls_total,
            requests_total=self._requests_total,
            max_concurrent_requests=self._max_concurrent,
            faults={k: dict(v) for k, v in self._faults.items()},
            rate_limited=self._rate_limited,
            max_running=self._max_running,
            running=self._running,
            queued=len(self._waiting),
            tasks_completed=self._completed,
            tasks_failed=self._failed,
            webhook_deliveries=self._webhook_ok,
            webhook_failures=self._webhook_failed,
            sync_timeouts=self._sync_timeouts,
            media_requests=self._media_requests,
            media_requests_with_auth=self._media_with_auth,
            uploads=self._upload_count,
            balance=self._balance,
            tasks={tid: t.record() for tid, t in self._stat_tasks.items()},
        )

    # ------------------------------------------------------------------ scheduler

    def _now(self) -> float:
        return self._clock.now()

    def _at(self, due: float, callback: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, callback))
        if due < self._timer_at:
            self._arm_timer()

    def _run_due(self) -> None:
        now = self._now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, callback = heapq.heappop(heap)
            callback(due)

    def _arm_timer(self) -> None:
        """With the real clock, wake up when the earliest event is due."""
        if self._manual is not None or self._loop is None or self._closing:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap:
            self._timer_at = math.inf
            return
        self._timer_at = self._heap[0][0]
        delay = max(0.0, self._timer_at - self._now())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._run_due()
        self._arm_timer()

    def _future(self) -> asyncio.Future[_Wake]:
        assert self._loop is not None  # noqa: S101 - set by start()
        fut: asyncio.Future[_Wake] = self._loop.create_future()
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        if self._closing:
            fut.set_result("closing")
        return fut

    async def _sleep(self, seconds: float) -> bool:
        """Sleep on the emulator's clock; ``False`` when the emulator is closing."""
        if seconds <= 0:
            return not self._closing
        fut = self._future()

        def wake(_: float) -> None:
            if not fut.done():
                fut.set_result("timeout")

        self._at(self._now() + seconds, wake)
        return await fut != "closing"

    # ------------------------------------------------------------------ task lifecycle

    def _new_id(self) -> str:
        while True:
            task_id = f"{self._rng_ids.getrandbits(128):032x}"
            if task_id not in self._tasks:
                return task_id

    def _create(self, model: str, body: dict[str, Any], host: str, webhook: str | None) -> _Task:
        now = self._now()
        prompt = body.get("prompt")
        prompt = prompt if isinstance(prompt, str) else ""
        task = _Task(self._new_id(), model, prompt, now)
        # Always draw the same number of values per task, so runs repeat.
        rng = self._rng_tasks
        queue_s, inference_s = self.config.latency.for_model(model).draw(rng)
        fail_u, code_u, seed_draw = rng.random(), rng.random(), rng.randrange(10_000_000_000)
        fail, latency, nsfw = _parse_directives(prompt)
        if latency is not None:
            queue_s, inference_s = latency * 0.1, latency * 0.9
        if fail is None and fail_u < self.config.failure_rate:
            fail = next(code for edge, code in _RANDOM_FAIL_CODES if code_u < edge)
        image = body.get("image")
        if fail is None and isinstance(image, str) and not self._reachable(image, host):
            fail = 1402
        task.code = fail
        task.queue_s, task.inference_s = queue_s, inference_s
        task.nsfw = nsfw
        task.base64 = body.get("enable_base64_output") is True
        num = body.get("num_images", 1)
        task.num_images = num if isinstance(num, int) and 1 <= num <= 10 else 1
        task.width, task.height = output_size(body)
        seed = body.get("seed")
        task.seed = seed if isinstance(seed, int) and seed >= 0 else seed_draw
        task.webhook_url = webhook
        self._tasks[task.id] = task
        self._stat_tasks[task.id] = task
        self._tasks_per_prompt[prompt] = self._tasks_per_prompt.get(prompt, 0) + 1
        if self.config.limits.submits_per_minute is not None:
            self._window.append(now)
        self._at(now + queue_s, lambda t: self._ready(t, task))
        logger.debug("task %s created (%s)", task.id, model)
        return task

    def _ready(self, t: float, task: _Task) -> None:
        limit = self.config.limits.max_running
        if limit is not None and self._running >= limit:
            self._waiting.append(task)
        else:
            self._start(t, task)

    def _start(self, t: float, task: _Task) -> None:
        task.status = "processing"
        task.started_at = t
        self._running += 1
        self._max_running = max(self._max_running, self._running)
        self._at(t + task.inference_s, lambda t2: self._finish(t2, task))

    def _finish(self, t: float, task: _Task) -> None:
        task.finished_at = t
        self._running -= 1
        if task.code is not None:
            task.status = "failed"
            self._failed += 1
        else:
            task.status = "completed"
            self._completed += 1
            price = self.config.prices.get(task.model, self.config.default_price)
            self._balance -= price * task.num_images
        logger.debug("task %s %s", task.id, task.status)
        if task.waiters:
            for fut in task.waiters:
                if not fut.done():
                    fut.set_result("done")
            task.waiters = None
        if task.webhook_url is not None and not self._closing:
            self._spawn(self._deliver(task, t))
        if self._waiting:
            self._start(t, self._waiting.popleft())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None  # noqa: S101 - set by start()
        bg = self._loop.create_task(coro)
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    async def _deliver(self, task: _Task, finished: float) -> None:
        url = task.webhook_url
        assert url is not None  # noqa: S101 - checked by the caller
        drop = self._rng_webhooks.random() < self.config.webhook_failure_rate
        webhook_id = f"{self._rng_webhooks.getrandbits(128):032x}"
        if drop:
            task.delivery_failures += 1
            self._webhook_failed += 1
            logger.info("webhook for task %s dropped (webhook_failure_rate)", task.id)
            return
        body = _encode(self._prediction(task, self.base_url))
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(self.webhook_secret, webhook_id, timestamp, body),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            logger.info("webhook for task %s failed: %s", task.id, type(exc).__name__)
            ok = False
        if ok:
            task.deliveries += 1
            self._webhook_ok += 1
            if task.first_seen is None:
                task.first_seen = finished if self._manual is not None else self._now()
        else:
            task.delivery_failures += 1
            self._webhook_failed += 1

    # ------------------------------------------------------------------ wire shapes

    def _prediction(self, task: _Task, base: str) -> dict[str, Any]:
        status = task.visible_status
        outputs: list[str] = []
        nsfw: list[bool] | None = None
        inference: int | None = None
        error = ""
        if task.finished_at is not None:
            assert task.started_at is not None  # noqa: S101 - set before finished_at
            inference = round(task.inference_s * 1000)
            nsfw = []
        if status == "completed":
            if task.base64:
                outputs = [
                    base64.b64encode(
                        self._images.get(task.prompt, task.seed, n, task.width, task.height)
                    ).decode()
                    for n in range(task.num_images)
                ]
            else:
                outputs = [
                    f"{base}/media/outputs/{task.id}/{n}.png" for n in range(task.num_images)
                ]
            nsfw = [task.nsfw] * task.num_images
        elif status == "failed":
            error = _error_text(task.code)
        data: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "outputs": outputs,
            "urls": {"get": f"{base}/api/v3/predictions/{task.id}/result"},
            "has_nsfw_contents": nsfw,
            "status": status,
            "created_at": _iso(self._epoch + task.created_at),
            "error": error,
            "timings": {"inference": inference},
            "executionTime": (
                round((task.finished_at - task.created_at) * 1000)
                if task.finished_at is not None
                else 0
            ),
        }
        if status == "failed":
            data["code"] = task.code
        return data

    def _seen(self, task: _Task) -> None:
        if task.first_seen is None and task.visible_status in ("completed", "failed", "deleted"):
            task.first_seen = self._now()

    def _reachable(self, url: str, host: str) -> bool:
        """Other hosts are assumed reachable; our own ``/media/...`` must exist."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return True
        own = parts.netloc == host or (
            parts.hostname in ("127.0.0.1", "localhost", "::1", self._host) and port == self._port
        )
        if not own or not parts.path.startswith("/media/"):
            return True
        segments = parts.path.split("/")
        if len(segments) == 5 and segments[2] == "uploads":
            return segments[3] in self._uploads
        if len(segments) == 5 and segments[2] == "outputs":
            task = self._tasks.get(segments[3])
            index = segments[4].removesuffix(".png")
            return (
                task is not None
                and task.visible_status == "completed"
                and index.isdigit()
                and int(index) < task.num_images
            )
        return False

    # ------------------------------------------------------------------ faults

    def _draw_fault(self, on: str, rates: FaultRates) -> str | None:
        """The fault for this request. Always draws two numbers, so sequences repeat."""
        rng = self._rng_faults[on]
        u = rng.random()
        self._code_draw = rng.random()
        if self._forced[on]:
            return self._forced[on].popleft()
        edge = 0.0
        for name, rate in rates.items():
            edge += rate
            if u < edge:
                return name
        return None

    def _count_fault(self, kind: str, phase: str) -> None:
        by_phase = self._faults.setdefault(kind, {})
        by_phase[phase] = by_phase.get(phase, 0) + 1

    def _server_error(self, *, retry_after: bool) -> web.Response:
        v = self._code_draw
        if v < 1 / 3:
            return _error(500, "internal server error")
        if v < 2 / 3:
            return web.Response(status=502, body=_BAD_GATEWAY_HTML, content_type="text/html")
        headers = {"Retry-After": str(self.config.retry_after_s)} if retry_after else None
        return _error(503, "service unavailable", headers)

    def _rate_limit_fault(self) -> web.Response:
        return _error(429, "too many requests", {"Retry-After": str(self.config.retry_after_s)})

    @staticmethod
    def _malformed(payload: dict[str, Any]) -> web.Response:
        full = _encode(payload)
        return web.Response(
            status=200, body=full[: max(1, len(full) // 2)], content_type="application/json"
        )

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        self._requests_total += 1
        self._in_flight += 1
        self._max_concurrent = max(self._max_concurrent, self._in_flight)
        try:
            self._run_due()
            return await handler(request)
        finally:
            self._in_flight -= 1

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        expected = self.config.api_key
        return expected is None or hmac.compare_digest(key.encode(), expected.encode())

    @staticmethod
    def _unauthorized() -> web.Response:
        return _error(401, "Unauthorized: missing or invalid API key")

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    # ------------------------------------------------------------------ handlers

    async def _h_submit(self, request: web.Request) -> web.StreamResponse:
        self._submits_received += 1
        if not self._authorized(request):
            return self._unauthorized()
        model = request.match_info["model"].strip("/")
        segments = model.split("/")
        if not 2 <= len(segments) <= 3 or not all(segments):
            return _error(404, f"model {model!r} not found")
        fault = self._draw_fault("submit", self.config.submit_faults)
        kind, phase = _FAULTS[fault] if fault is not None else ("", "")
        if phase == "before":
            self._count_fault(kind, "before")
            if kind == "rate_limit":
                return self._rate_limit_fault()
            if kind == "server_error":
                return self._server_error(retry_after=True)
            if kind == "reset":
                return _abort(request)
            if not await self._sleep(self.config.stall_s):  # stall
                return _error(503, "emulator shutting down")
            self._run_due()
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return _error(400, "body: not valid JSON; allowed: a JSON object of model inputs")
        if not isinstance(body, dict):
            return _error(400, "body: expected a JSON object of model inputs")
        problem = check_input(MODEL_SPECS.get(model), body)
        if problem is not None:
            return _error(400, problem[1])
        webhook = request.query.get("webhook")
        if webhook is not None:
            parts = urlsplit(webhook)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return _error(400, f"webhook: {webhook!r:.80} is not an http(s) URL")
            if body.get("enable_base64_output") is True:
                return _error(
                    400, "enable_base64_output: cannot be combined with a webhook; allowed: false"
                )
        limit = self.config.limits.submits_per_minute
        if limit is not None:
            now = self._now()
            window = self._window
            while window and window[0] <= now - _RATE_WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                self._rate_limited += 1
                retry = max(1, math.ceil(window[0] + _RATE_WINDOW_S - now))
                return _error(
                    429,
                    f"rate limit exceeded: {limit} generations per minute",
                    {"Retry-After": str(retry)},
                )
        if self.config.enforce_balance and self._balance <= 0:
            return _error(403, "insufficient balance")
        base = self._base(request)
        task = self._create(model, body, request.host, webhook)
        sync_timed_out = False
        if body.get("enable_sync_mode") is True and task.status not in ("completed", "failed"):
            fut = self._future()
            if task.waiters is None:
                task.waiters = []
            task.waiters.append(fut)

            def timeout(_: float) -> None:
                if not fut.done():
                    fut.set_result("timeout")

            self._at(self._now() + self.config.sync_wait_s, timeout)
            woke = await fut
            if woke == "closing":
                return _error(503, "emulator shutting down")
            self._run_due()
            sync_timed_out = woke == "timeout"
        data = self._prediction(task, base)
        data["input"] = body
        payload = _envelope(data)
        if sync_timed_out:
            self._sync_timeouts += 1
            data["status"] = "processing"
            data["code"] = 5004
            payload = _envelope(data, 5004, "timeout: the task is still running; poll its id")
        if phase == "after":
            self._count_fault(kind, "after")
            if kind == "server_error":
                return self._server_error(retry_after=False)
            if kind == "reset":
                return _abort(request)
            if kind == "malformed":
                return self._malformed(payload)
            if not await self._sleep(self.config.stall_s):  # stall
                return _error(503, "emulator shutting down")
            self._run_due()
        if not sync_timed_out:
            self._seen(task)
        return _json(200, payload)

    async def _h_poll(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        task = self._tasks.get(request.match_info["id"])
        if task is not None:
            task.polls += 1
            self._polls_total += 1
        fault = self._draw_fault("poll", self.config.poll_faults)
        kind = _FAULTS[fault][0] if fault is not None else ""
        if kind:
            self._count_fault(kind, "poll")
        if kind == "rate_limit":
            return self._rate_limit_fault()
        if kind == "server_error":
            return self._server_error(retry_after=True)
        if kind == "reset":
            return _abort(request)
        if kind == "stall":
            if not await self._sleep(self.config.stall_s):
                return _error(503, "emulator shutting down")
            self._run_due()
        if task is None:
            return _error(404, f"prediction {request.match_info['id']!r:.80} not found")
        payload = _envelope(self._prediction(task, self._base(request)))
        if kind == "malformed":
            return self._malformed(payload)
        self._seen(task)
        return _json(200, payload)

    async def _h_balance(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        return _json(200, _envelope({"balance": round(self._balance, 6)}))

    async def _h_secret(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        return _json(200, _envelope({"secret": self.webhook_secret}))

    async def _h_delete(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return _error(400, 'body: not valid JSON; allowed: {"ids": [...]}')
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _error(400, "ids: expected a list of task ids")
        for task_id in ids:
            task = self._tasks.get(task_id)
            if task is not None:
                task.deleted = True
        return _json(200, _envelope(None))

    async def _h_upload(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        limit = self.config.max_upload_bytes
        too_large = f"file: larger than the {limit} bytes allowed; pass a URL instead"
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            return _error(413, too_large)
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            return _error(400, "body: expected multipart/form-data with a 'file' field")
        while True:
            part = await reader.next()
            if part is None:
                return _error(400, "file: required multipart field is missing")
            if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
                continue
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    return _error(413, too_large)
                chunks.append(chunk)
            break
        content_type = part.headers.get("Content-Type", "application/octet-stream")
        filename = _FILENAME_RE.sub("_", unquote(part.filename or "file")).strip("._") or "file"
        token = f"{self._rng_ids.getrandbits(64):016x}"
        self._uploads[token] = _Upload(b"".join(chunks), content_type)
        self._upload_count += 1
        data = {
            "type": content_type.split("/", 1)[0] or "file",
            "download_url": f"{self._base(request)}/media/uploads/{token}/{filename}",
            "filename": filename,
            "size": size,
        }
        return _json(200, _envelope(data))

    def _count_media(self, request: web.Request) -> None:
        self._media_requests += 1
        if "Authorization" in request.headers:
            self._media_with_auth += 1
            logger.warning("a media download carried an Authorization header: %s", request.path)

    async def _h_output(self, request: web.Request) -> web.StreamResponse:
        self._count_media(request)
        task = self._tasks.get(request.match_info["id"])
        index = request.match_info["name"].removesuffix(".png")
        if (
            task is None
            or task.visible_status != "completed"
            or not index.isdigit()
            or int(index) >= task.num_images
        ):
            return web.Response(status=404, text="not found")
        png = self._images.get(task.prompt, task.seed, int(index), task.width, task.height)
        return web.Response(body=png, content_type="image/png")

    async def _h_upload_file(self, request: web.Request) -> web.StreamResponse:
        self._count_media(request)
        upload = self._uploads.get(request.match_info["token"])
        if upload is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=upload.data, headers={"Content-Type": upload.content_type})

    async def _h_stats(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_encode(self.stats()), content_type="application/json")

    async def _h_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return _json(200, _envelope(None))
