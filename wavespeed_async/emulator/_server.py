"""The emulator: an aiohttp server that behaves like the WaveSpeed v3 REST API.

``Emulator`` wires the parts together and serves them: the scheduler (``_scheduler``),
tasks (``_tasks``), faults (``_faults``), limits (``_limits``), webhook delivery
(``_delivery``), the prediction and media endpoints (``_predictions``, ``_media``) and
the counters (``_stats``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._delivery import WebhookSender
from wavespeed_async.emulator._faults import FaultInjector
from wavespeed_async.emulator._limits import SubmitLimits
from wavespeed_async.emulator._media import Media
from wavespeed_async.emulator._png import ImageCache
from wavespeed_async.emulator._predictions import Predictions, render_prediction
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters, EmulatorStats, TaskRecord
from wavespeed_async.emulator._tasks import Task, TaskEngine
from wavespeed_async.emulator._wire import encode, envelope, json_response, require_auth

__all__ = ["Emulator"]

logger = logging.getLogger("wavespeed_async.emulator")


class Emulator:
    """A local WaveSpeed v3 API, for tests and benchmarks.

    Use as ``async with Emulator(config) as emu:`` and point a client at ``emu.base_url``::

        async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:
            async with Client("any-key", base_url=emu.base_url) as client:
                await client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a fox"})
            assert emu.stats().tasks_created == 1

    It serves on ``host``:``port`` (``port=0``: a free one) in the running event loop.
    Test controls: :meth:`stats` and :meth:`reset_stats` (what clients did),
    :meth:`task` (one task's server-side record), :meth:`force_fault` (the next requests'
    faults), :meth:`advance` (time, with a :class:`ManualClock`), :attr:`balance` and
    :attr:`webhook_secret`. In pytest, the ``wavespeed_emulator`` fixture runs one.

    Args:
        config: What the emulator does (latencies, faults, limits, seed); default
            ``EmulatorConfig()``: realistic latencies, no faults.
        host: The address to bind (``127.0.0.1``).
        port: The port to bind; 0 picks a free one (read it from :attr:`port`).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config = config if config is not None else EmulatorConfig()
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._scheduler = scheduler = Scheduler(config.clock)
        self._epoch = time.time() - scheduler.now()
        self._counters = counters = Counters()
        self._images = ImageCache(config.image_cache_bytes)
        # Task ids and upload tokens come from one stream.
        rng_ids = random.Random(f"{config.seed}:ids")
        self._webhooks = WebhookSender(
            config, scheduler, counters, lambda task: encode(self._render(task, self.base_url))
        )
        self._tasks = TaskEngine(config, scheduler, counters, rng_ids, self._webhooks.on_finish)
        self._faults = FaultInjector(config, scheduler, counters)
        self._media = Media(config, counters, self._tasks, self._images, rng_ids)
        self._predictions = Predictions(
            config,
            scheduler,
            counters,
            self._tasks,
            self._faults,
            SubmitLimits(config, scheduler, counters),
            self._render,
            self._reachable,
        )
        self._runner: web.AppRunner | None = None
        self._in_flight = 0

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
        """The bound port (the real one when 0 was asked for); RuntimeError before start."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def webhook_secret(self) -> str:
        """The secret webhooks are signed with (``GET /api/v3/webhook/secret``)."""
        return self._webhooks.secret

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self._webhooks.secret = value

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already started")
        self._scheduler.attach(asyncio.get_running_loop())
        app = web.Application(
            middlewares=[self._middleware],
            client_max_size=max(16 * 1024 * 1024, self.config.max_upload_bytes + 1024 * 1024),
        )
        key = self.config.api_key
        r = app.router
        r.add_get("/_emulator/stats", self._h_stats)
        r.add_post("/_emulator/reset", self._h_reset)
        r.add_get("/api/v3/balance", require_auth(self._h_balance, key))
        r.add_get("/api/v3/webhook/secret", require_auth(self._h_secret, key))
        r.add_post("/api/v3/media/upload/binary", require_auth(self._media.upload, key))
        r.add_post("/api/v3/media/uploads", require_auth(self._media.ticket, key))
        r.add_post("/api/v3/predictions/delete", require_auth(self._predictions.delete, key))
        poll = require_auth(self._predictions.poll, key)
        r.add_get("/api/v3/predictions/{id}/result", poll)
        r.add_get("/api/v3/predictions/{id}", poll)
        r.add_post("/api/v3/{model:.+}", self._predictions.submit)
        r.add_get("/media/outputs/{id}/{name}", self._media.output)
        r.add_get("/media/uploads/{token}/{name}", self._media.uploaded)
        r.add_put("/media/put/{token}", self._media.put)
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
        self._scheduler.arm()
        logger.info("emulator listening on %s", self.base_url)

    async def close(self) -> None:
        """Stop serving; cancel held answers and webhook deliveries."""
        if self._runner is None:
            return
        self._scheduler.close()
        await self._webhooks.cancel()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        await self._webhooks.close()
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
        self._faults.force(kind, on, times)

    def task(self, task_id: str) -> TaskRecord | None:
        """The server-side record of a task, or ``None``."""
        self._scheduler.run_due()
        task = self._tasks.get(task_id)
        return task.record() if task is not None else None

    @property
    def balance(self) -> float:
        """The account balance in USD: ``initial_balance`` minus what completed tasks cost."""
        return self._tasks.balance

    async def advance(self, seconds: float) -> None:
        """With a ``ManualClock``: move time, run what became due, finish webhook deliveries."""
        self._scheduler.advance(seconds)
        # Let woken handlers answer, then wait for the deliveries that became due.
        for _ in range(3):
            await asyncio.sleep(0)
        await self._webhooks.wait(timeout=30.0)

    def reset_stats(self) -> None:
        """Zero the counters; ``stats().tasks`` then lists only tasks created afterwards."""
        self._counters.reset(in_flight=self._in_flight, running=self._tasks.running)
        for task in self._tasks.tasks.values():
            task.polls = 0
            task.deliveries = 0
            task.delivery_failures = 0

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        self._scheduler.run_due()
        tasks = self._tasks
        return self._counters.snapshot(
            tasks.tasks.values(),
            running=tasks.running,
            queued=len(tasks.waiting),
            balance=tasks.balance,
        )

    # ------------------------------------------------------------------ wiring

    def _render(self, task: Task, base: str) -> dict[str, Any]:
        return render_prediction(task, base, self._epoch, self._images)

    def _reachable(self, url: str, host: str) -> bool:
        return self._media.reachable(url, host, self._host, self._port)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        counters = self._counters
        counters.requests_total += 1
        self._in_flight += 1
        counters.max_concurrent = max(counters.max_concurrent, self._in_flight)
        try:
            self._scheduler.run_due()
            return await handler(request)
        finally:
            self._in_flight -= 1

    # ------------------------------------------------------------------ small handlers

    async def _h_balance(self, request: web.Request) -> web.StreamResponse:
        return json_response(200, envelope({"balance": round(self._tasks.balance, 6)}))

    async def _h_secret(self, request: web.Request) -> web.StreamResponse:
        return json_response(200, envelope({"secret": self.webhook_secret}))

    async def _h_stats(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=encode(self.stats()), content_type="application/json")

    async def _h_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_stats()
        return json_response(200, envelope(None))
