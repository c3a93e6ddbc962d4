"""The emulator: one request dispatcher, served over HTTP (aiohttp) or called in process.

``Emulator`` wires the parts together: the scheduler (``_scheduler``), tasks (``_tasks``),
money (``_billing``, ``_account``), faults (``_faults``), limits (``_limits``), webhook
delivery (``_delivery``), the prediction, history and media endpoints (``_predictions``,
``_history``, ``_media``) and the counters (``_stats``). Every request, whether it came
through the socket or through :meth:`Emulator.handle`, goes through ``_dispatch``: the
same routes, auth, faults, limits and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from wavespeed_async._core.errors import AsyncioRequiredError
from wavespeed_async.emulator._account import Account
from wavespeed_async.emulator._billing import BillingRecord, Ledger, Pricing, to_money
from wavespeed_async.emulator._catalogue import EmulatedModel
from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._delivery import WebhookSender
from wavespeed_async.emulator._faults import FaultInjector
from wavespeed_async.emulator._history import History
from wavespeed_async.emulator._limits import SubmitLimits
from wavespeed_async.emulator._media import Media
from wavespeed_async.emulator._png import ImageCache
from wavespeed_async.emulator._predictions import Predictions, render_prediction
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters, EmulatorStats, TaskRecord
from wavespeed_async.emulator._tasks import Task, TaskEngine
from wavespeed_async.emulator._transport import EmulatorTransport
from wavespeed_async.emulator._wire import (
    BodyTooLarge,
    EmulatedDisconnect,
    EmulatedResponse,
    Handler,
    Request,
    authorized,
    encode,
    envelope,
    error,
    json_reply,
    unauthorized,
)

__all__ = ["IN_PROCESS_BASE_URL", "Emulator"]

logger = logging.getLogger("wavespeed_async.emulator")

#: The base of the URLs an emulator without a socket (``port=None``) hands out. The
#: ``.invalid`` domain never resolves, so nothing can reach it over a network by mistake.
IN_PROCESS_BASE_URL: Final = "http://emulator.invalid"

_Route = tuple[str, "re.Pattern[str]", Handler, bool]


class Emulator:
    """A local WaveSpeed v3 API, for tests and benchmarks.

    Use as ``async with Emulator(config) as emu:`` and point a client at ``emu.base_url``::

        async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:
            async with Client("any-key", base_url=emu.base_url) as client:
                await client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a fox"})
            assert emu.stats().tasks_created == 1

    It serves on ``host``:``port`` (``port=0``: a free one) in the running event loop. With
    ``port=None`` it opens no socket at all: requests come in through :meth:`handle`, which
    serves exactly what the socket would (same routes, auth, faults, limits and stats), and
    URLs it hands out start with ``http://emulator.invalid``. :meth:`handle` also works
    beside a socket.

    Test controls: :meth:`stats` and :meth:`reset_stats` (what clients did),
    :meth:`task` (one task's server-side record), :meth:`force_fault` (the next requests'
    faults), :meth:`advance` (time, with a :class:`ManualClock`), :attr:`balance`,
    :meth:`billing_records`, :meth:`catalogue` and :attr:`webhook_secret`. In pytest, the
    ``wavespeed_emulator`` fixture runs one.

    Task ids and upload tokens differ between two emulators even with the same seed (a
    client resuming a batch must never find another run's task under an old id); images,
    latencies, failures and faults repeat for a seed.

    Args:
        config: What the emulator does (latencies, faults, limits, seed); default
            ``EmulatorConfig()``: realistic latencies, no faults.
        host: The address to bind (``127.0.0.1``).
        port: The port to bind; 0 picks a free one (read it from :attr:`port`); ``None``
            binds nothing (in-process only, through :meth:`handle`).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = 0,
    ) -> None:
        self.config = config = config if config is not None else EmulatorConfig()
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._started = False
        self._scheduler = scheduler = Scheduler(config.clock)
        self._epoch = epoch = time.time() - scheduler.now()
        self._counters = counters = Counters()
        self._images = ImageCache(config.image_cache_bytes)
        # Task ids, upload tokens and billing uuids come from one stream, seeded per
        # emulator as well as by the seed: ids never repeat across runs.
        rng_ids = random.Random(f"{config.seed}:ids:{secrets.token_hex(16)}")
        self._pricing = pricing = Pricing(
            {m.model_id: m for m in config.models},
            {k: to_money(v, k) for k, v in config.prices.items()},
            to_money(config.default_price, "default_price"),
            to_money(config.discount_rate, "discount_rate"),
        )
        ledger = Ledger(to_money(config.initial_balance, "initial_balance"), rng_ids)
        self._webhooks = WebhookSender(
            config,
            scheduler,
            counters,
            lambda task: encode(self._render(task, self.base_url)),
            rng_ids,
        )
        self._tasks = TaskEngine(
            config, scheduler, counters, rng_ids, ledger, self._webhooks.on_finish
        )
        self._faults = FaultInjector(config, scheduler, counters)
        self._media = Media(config, counters, self._tasks, self._images, rng_ids)
        self._account = Account(config, scheduler, self._tasks, pricing, epoch)
        self._history = History(scheduler, self._tasks, self._render, epoch)
        self._predictions = Predictions(
            config,
            scheduler,
            counters,
            self._tasks,
            pricing,
            self._faults,
            SubmitLimits(config, scheduler, counters),
            self._render,
            self._reachable,
        )
        self._routes = self._make_routes()
        self._client_max_size = max(16 * 1024 * 1024, config.max_upload_bytes + 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[EmulatedResponse]] = set()
        self._in_flight = 0

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None or self._requested_port is None else ""
        state = "started" if self._started else "not started"
        return f"Emulator({where or 'not listening'}, {state}, tasks={len(self._tasks.tasks)})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server.

        ``http://emulator.invalid`` when the emulator opens no socket (``port=None``).
        """
        if self._requested_port is None:
            return IN_PROCESS_BASE_URL
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
        if self._requested_port is None:
            raise RuntimeError("the emulator has no socket (port=None); use handle()")
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def listening(self) -> bool:
        """Whether a socket is bound (``False`` before start and with ``port=None``)."""
        return self._runner is not None

    @property
    def webhook_secret(self) -> str:
        """The secret webhooks are signed with (``GET /api/v3/webhook/secret``)."""
        return self._webhooks.secret

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self._webhooks.secret = value

    async def start(self) -> None:
        """Start serving: bind the socket, unless ``port=None``.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
        """
        if self._started:
            raise RuntimeError("the emulator is already started")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AsyncioRequiredError(
                "the emulator runs on asyncio only (it is built on aiohttp); no asyncio event "
                "loop is running here. Under anyio, use anyio.run(main), not the trio backend"
            ) from None
        self._scheduler.attach(loop)
        if self._requested_port is not None:
            await self._listen(self._requested_port)
        self._started = True
        self._scheduler.arm()
        if self._runner is not None:
            logger.info("emulator listening on %s", self.base_url)
        else:
            logger.info("emulator started in process (no socket)")

    async def _listen(self, port: int) -> None:
        app = web.Application(client_max_size=self._client_max_size)
        app.router.add_route("*", "/{tail:.*}", self._serve_http)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            family, _, _, _, addr = socket.getaddrinfo(
                self._host or None, port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except BaseException:
            await runner.cleanup()
            raise
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

    async def close(self) -> None:
        """Stop serving; cancel held answers and webhook deliveries."""
        if not self._started:
            return
        self._started = False
        self._scheduler.close()
        await self._webhooks.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        # In-process requests held by a stall or sync mode answer at once now.
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
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

    # ------------------------------------------------------------------ in process

    def transport(self) -> EmulatorTransport:
        """A Client transport serving this emulator in process, with no socket.

        Example::

            async with Emulator(port=None) as emu:
                async with Client("any-key", base_url=emu.base_url,
                                  transport=emu.transport()) as client:
                    ...

        API requests, downloads of the outputs and upload PUTs all come here through
        :meth:`handle`; faults show as a socket would show them.
        """
        return EmulatorTransport(self)

    async def handle(
        self,
        method: str,
        path_qs: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> EmulatedResponse:
        """Serve one request in process, with no socket: what the HTTP server would answer.

        ``path_qs`` is the path and query (``/api/v3/predictions/ID/result``); an absolute
        URL is accepted too. The ``Host`` header (else :attr:`base_url`'s host) is the
        host of the URLs the answer hands out. A body without ``Content-Length`` gets one,
        as an HTTP client would send.

        The outcomes a socket would show:

        - an :class:`EmulatedResponse` (status, case-insensitive headers, body bytes),
          including the 5xx and truncated bodies that faults inject;
        - :class:`ResetBeforeRequest`: the connection was reset before the request was
          read; it never reached the server;
        - :class:`ResetAfterRequest`: reset after the request was processed; the answer
          is lost (a submit's task exists and is billed);
        - a stall: the answer comes only after ``stall_s`` on the emulator's clock (with a
          ``ManualClock``, when :meth:`advance` gets there). Cancel the call to give up;
          the server side goes on as it would after a client hung up (a ``stall_before``
          submit still creates its task).

        Raises:
            RuntimeError: the emulator is not started.
        """
        if not self._started:
            raise RuntimeError("the emulator is not started: use `async with Emulator(...)`")
        target, host = path_qs, urlsplit(self.base_url).netloc
        if "://" in path_qs:
            parts = urlsplit(path_qs)
            host = parts.netloc
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        all_headers = dict(headers or {})
        if body and not any(k.lower() == "content-length" for k in all_headers):
            all_headers["Content-Length"] = str(len(body))
        limit = self._client_max_size

        async def read() -> bytes:
            if len(body) > limit:
                raise BodyTooLarge
            return bytes(body)

        request = Request(method, target, all_headers, scheme="http", host=host, read=read)
        # Like aiohttp's server, a client that goes away does not cancel the handler.
        served = self._scheduler.create_task(self._dispatch(request))
        self._handlers.add(served)
        served.add_done_callback(self._handled)
        answer = await asyncio.shield(served)
        # Header names are case-insensitive, as an HTTP client's would be.
        headers = CIMultiDictProxy(CIMultiDict(answer.headers))
        body = b"" if request.method == "HEAD" else answer.body
        return EmulatedResponse(answer.status, headers, body)

    def _handled(self, served: asyncio.Task[EmulatedResponse]) -> None:
        self._handlers.discard(served)
        if not served.cancelled():
            served.exception()  # retrieved: its caller may have been cancelled

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
    def balance(self) -> Decimal:
        """The account balance in USD: ``initial_balance`` minus charges plus refunds."""
        self._scheduler.run_due()
        return self._tasks.ledger.balance

    def billing_records(self) -> list[BillingRecord]:
        """Every charge and refund since the start, oldest first (``reset_stats`` keeps them)."""
        self._scheduler.run_due()
        return list(self._tasks.ledger.records)

    def catalogue(self) -> Mapping[str, EmulatedModel]:
        """The models this emulator lists and runs: the built-in ones plus ``config.models``."""
        return dict(self._pricing.models)

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
            balance=tasks.ledger.balance,
        )

    # ------------------------------------------------------------------ wiring

    def _render(self, task: Task, base: str) -> dict[str, Any]:
        return render_prediction(task, base, self._epoch, self._images)

    def _reachable(self, url: str, host: str) -> bool:
        return self._media.reachable(url, host, self._host, self._port)

    def _make_routes(self) -> list[_Route]:
        pred, media, account = self._predictions, self._media, self._account
        table: list[tuple[str, str, Handler, bool]] = [
            # (method, path pattern, handler, needs the API key)
            ("GET", "/_emulator/stats", self._h_stats, False),
            ("POST", "/_emulator/reset", self._h_reset, False),
            ("GET", "/api/v3/balance", account.balance, True),
            ("GET", "/api/v3/models", account.models, True),
            ("POST", "/api/v3/model/price", account.price, True),
            ("POST", "/api/v3/model/pricing", account.pricing, True),
            ("POST", "/api/v3/billings/search", account.billings, True),
            ("POST", "/api/v3/user/usage_stats", account.usage, True),
            ("GET", "/api/v3/webhook/secret", self._h_secret, True),
            ("POST", "/api/v3/media/upload/binary", media.upload, True),
            ("POST", "/api/v3/media/uploads", media.ticket, True),
            ("POST", "/api/v3/predictions", self._history.search, True),
            ("POST", "/api/v3/predictions/delete", pred.delete, True),
            ("GET", "/api/v3/predictions/(?P<id>[^/]+)/result", pred.poll, True),
            ("GET", "/api/v3/predictions/(?P<id>[^/]+)", pred.poll, True),
            # Checks the key itself: refused submits are counted too.
            ("POST", "/api/v3/(?P<model>.+)", pred.submit, False),
            ("GET", "/media/outputs/(?P<id>[^/]+)/(?P<name>[^/]+)", media.output, False),
            ("GET", "/media/uploads/(?P<token>[^/]+)/(?P<name>[^/]+)", media.uploaded, False),
            ("PUT", "/media/put/(?P<token>[^/]+)", media.put, False),
        ]
        return [(m, re.compile(f"^{p}$"), h, auth) for m, p, h, auth in table]

    async def _dispatch(self, request: Request) -> EmulatedResponse:
        """Answer ``request``: the one code path of the socket and of :meth:`handle`."""
        if request.path.startswith("/_emulator/"):
            return await self._route(request)
        counters = self._counters
        counters.requests_total += 1
        self._in_flight += 1
        counters.max_concurrent = max(counters.max_concurrent, self._in_flight)
        try:
            self._scheduler.run_due()
            return await self._route(request)
        except BodyTooLarge:
            return error(413, "body: larger than the server accepts")
        finally:
            self._in_flight -= 1

    async def _route(self, request: Request) -> EmulatedResponse:
        method = "GET" if request.method == "HEAD" else request.method
        allowed: list[str] = []
        for route_method, pattern, handler, needs_key in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            request.match = match.groupdict()
            if needs_key and not authorized(request, self.config.api_key):
                return unauthorized()
            return await handler(request)
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            return error(
                405, f"method {request.method} not allowed; allowed: {methods}", {"Allow": methods}
            )
        return error(404, f"{request.path!r:.100} not found")

    async def _serve_http(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp side: carry out what ``_dispatch`` answered, resets included."""

        async def read() -> bytes:
            try:
                return await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise BodyTooLarge from None

        inner = Request(
            request.method,
            request.raw_path,
            request.headers,
            scheme=request.scheme,
            host=request.host,
            read=read,
        )
        try:
            answer = await self._dispatch(inner)
        except EmulatedDisconnect:
            _reset(request)
            return web.Response(status=500)  # never sent: the connection is gone
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    # ------------------------------------------------------------------ small handlers

    async def _h_secret(self, request: Request) -> EmulatedResponse:
        return json_reply(200, envelope({"secret": self.webhook_secret}))

    async def _h_stats(self, request: Request) -> EmulatedResponse:
        return EmulatedResponse(200, {"Content-Type": "application/json"}, encode(self.stats()))

    async def _h_reset(self, request: Request) -> EmulatedResponse:
        self.reset_stats()
        return json_reply(200, envelope(None))


def _reset(request: web.Request) -> None:
    """Reset the TCP connection (RST, no answer)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
