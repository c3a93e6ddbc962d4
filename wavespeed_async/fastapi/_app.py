"""FastAPI integration: one Client per app, and results pushed by WaveSpeed webhooks.

::

    from fastapi import FastAPI, Request
    from wavespeed_async.fastapi import WaveSpeed

    ws = WaveSpeed(public_url="https://myapp.example.com")   # key: $WAVESPEED_API_KEY
    app = FastAPI(lifespan=ws.lifespan)                      # opens / closes the Client
    app.include_router(ws.router)                            # POST /wavespeed/webhook

    @app.post("/generate")
    async def generate(request: Request, prompt: str) -> dict[str, object]:
        pred = await ws.run(request, "wavespeed-ai/flux-kontext-pro/text-to-image",
                            {"prompt": prompt})
        return {"id": pred.id, "outputs": pred.outputs}

``ws.run`` submits with ``?webhook=<public_url>/wavespeed/webhook``; the router verifies each
delivery against its raw body and wakes the matching wait at once. Polling continues only as
a slow fallback (``PollConfig.webhook_fallback_s``) in case a delivery never comes. If the
HTTP client disconnects, the wait is cancelled and the task id is logged: the task itself
keeps running, and is billed, on WaveSpeed (there is no cancel endpoint).

Needs the ``fastapi`` extra: ``pip install "wavespeed-async[fastapi]"``. See
``docs/fastapi.md``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Final, ParamSpec, TypeVar

import anyio

try:
    from fastapi import APIRouter, HTTPException, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.requests import ClientDisconnect
except ImportError as _exc:
    raise ModuleNotFoundError(
        f"wavespeed_async.fastapi needs FastAPI ({_exc}); install it with: "
        "pip install 'wavespeed-async[fastapi]'",
        name=_exc.name,
    ) from _exc

from wavespeed_async._core.errors import (
    ClientClosedError,
    DecodeError,
    ValidationError,
    WaveSpeedError,
    WebhookVerificationError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.requests import TypedRequest
from wavespeed_async._core.secret import masked
from wavespeed_async._core.webhooks import (
    DEFAULT_REPLAY_CACHE_SIZE,
    DEFAULT_TOLERANCE_S,
    ReplayGuard,
    check_secret,
    check_signature,
    check_tolerance,
    decode_delivery,
    read_headers,
)
from wavespeed_async._facade.client import Client
from wavespeed_async._facade.tasks import UNSET, Unset
from wavespeed_async._runtime.replay import first_time
from wavespeed_async.fastapi.events import (
    DEFAULT_EVENTS_PATH,
    DEFAULT_MAX_EVENT_STREAMS,
    TaskEventRoute,
)

__all__ = [
    "CLIENT_CLOSED_STATUS",
    "DEFAULT_WEBHOOK_PATH",
    "ClientDisconnected",
    "WaveSpeed",
    "run_until_disconnected",
]

log = logging.getLogger("wavespeed_async.fastapi")

#: Where :attr:`WaveSpeed.router` receives deliveries, unless told otherwise.
DEFAULT_WEBHOOK_PATH: Final = "/wavespeed/webhook"
#: The status of a request whose client went away (nginx's "client closed request"). No
#: one receives it; it shows in access logs.
CLIENT_CLOSED_STATUS: Final = 499
#: Deliveries are bare Predictions of URLs (base64 output cannot go with a webhook), so a
#: body larger than this is not WaveSpeed's: refused before it is buffered.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
#: After a failed fetch of the webhook secret, deliveries get a 503 without a new fetch for
#: this long; it doubles on each failure in a row, up to :data:`SECRET_RETRY_MAX_S`.
SECRET_RETRY_S: Final = 5.0
SECRET_RETRY_MAX_S: Final = 120.0

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Ids of the tasks created by the run_until_disconnected() call running in this context.
_created_ids: ContextVar[list[str] | None] = ContextVar("wavespeed_created_ids", default=None)

TaskHook = Callable[[Prediction], Awaitable[None] | None]


class ClientDisconnected(HTTPException):
    """The HTTP client went away while its handler waited for WaveSpeed; the wait stopped.

    Left unhandled, FastAPI answers :data:`CLIENT_CLOSED_STATUS` (499) to no one, without a
    traceback. The tasks in :attr:`task_ids` keep running, and are billed, on WaveSpeed:
    collect them later with ``client.wait(task_id)`` if you want their results.

    Attributes:
        task_ids: Tasks created by the cancelled call (empty if it was cancelled before its
            submit was answered: a task may still exist then).
    """

    def __init__(self, task_ids: Sequence[str]) -> None:
        super().__init__(
            status_code=CLIENT_CLOSED_STATUS,
            detail="the client disconnected; the task keeps running on WaveSpeed",
        )
        self.task_ids = tuple(task_ids)

    def __repr__(self) -> str:
        return f"ClientDisconnected(task_ids={self.task_ids!r})"


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the HTTP client has gone away (the ASGI ``http.disconnect`` message)."""
    try:
        # Read (and keep, for the handler) any body first: after it, the server's next
        # message is the disconnect, which it sends only when the connection is lost.
        await request.body()
    except ClientDisconnect:
        return
    except RuntimeError:
        pass  # the handler consumed the stream itself: only the disconnect is left to come
    while (await request.receive())["type"] != "http.disconnect":
        # Not sent by uvicorn or hypercorn; a server that does must not make this spin.
        await anyio.sleep(0.1)


async def run_until_disconnected(
    request: Request,
    fn: Callable[_P, Awaitable[_T]],
    /,
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _T:
    """Await ``fn(*args, **kwargs)``, cancelling it if the HTTP client of ``request`` leaves.

    ASGI servers do not cancel a handler whose client disconnected: without this, a handler
    would keep polling for a result no one will receive. ::

        pred = await run_until_disconnected(request, client.run, model, {"prompt": p})

    Returns:
        What ``fn`` returned; its exceptions propagate unchanged.

    Raises:
        ClientDisconnected: the client left first. The ids of tasks the call created are
            logged at WARNING (logger ``wavespeed_async.fastapi``) and carried in
            ``.task_ids`` when the Client was opened by :class:`WaveSpeed`; those tasks keep
            running on WaveSpeed.
    """
    ids: list[str] = []
    token = _created_ids.set(ids)
    result: list[_T] = []
    error: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                try:
                    await _wait_for_disconnect(request)
                except Exception:
                    # Watching is best effort: it must never break the call it watches.
                    log.debug("cannot watch the request for a disconnect", exc_info=True)
                    return
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                result.append(await fn(*args, **kwargs))
            except Exception as exc:
                # Raised after the task group, so that it is not wrapped in an ExceptionGroup.
                error = exc
            finally:
                tg.cancel_scope.cancel()
    finally:
        _created_ids.reset(token)
    if error is not None:
        raise error
    if result:
        return result[0]
    # Neither a result nor an error: the watcher cancelled the call (an outer cancellation
    # would have propagated from the task group).
    if ids:
        log.warning(
            "the HTTP client disconnected: stopped waiting for task %s, which keeps running "
            "(and is billed) on WaveSpeed; collect it later with client.wait(task_id)",
            ", ".join(ids),
            extra={"task_id": ids[0]} if len(ids) == 1 else {"task_ids": list(ids)},
        )
    else:
        log.warning(
            "the HTTP client disconnected before a task id was known; if a submit was in "
            "flight, a task may exist on WaveSpeed"
        )
    raise ClientDisconnected(ids)


def _record_created(pred: Prediction) -> None:
    ids = _created_ids.get()
    if ids is not None:
        ids.append(pred.id)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)


class WaveSpeed:
    """One :class:`~wavespeed_async.Client` for a FastAPI app, and its webhook receiver.

    * ``FastAPI(lifespan=ws.lifespan)`` opens the Client at startup and closes it at
      shutdown (or ``async with ws.lifespan(app):`` inside your own lifespan). Every
      handler shares it, so they share its flow control: in-flight cap, start rate, poll
      budget and connection pool.
    * ``Depends(ws.get_client)`` hands the Client to a handler.
    * ``app.include_router(ws.router)`` receives WaveSpeed's webhooks at ``webhook_path``.
    * ``await ws.run(request, model, input)`` runs a task with the webhook and stops
      waiting if the HTTP client disconnects.

    Args:
        public_url: The app's base URL as WaveSpeed can reach it, e.g.
            ``https://myapp.example.com``; webhooks go to ``public_url + webhook_path``.
            ``None``: :meth:`run` polls instead. May be set later (before requests come).
        webhook_path: The path of the webhook route of :attr:`router`.
        webhook_secret: The signing secret (``whsec_...``, never empty). Default: fetched
            with ``client.webhook_secret()`` on the first delivery whose headers and
            timestamp are valid, then cached until shutdown. A failed or empty fetch
            answers 503 and is not tried again for ``SECRET_RETRY_S`` seconds (doubling).
        tolerance_s: Deliveries whose timestamp is further than this from now, in seconds,
            are refused (a finite number > 0).
        replay_cache_size: Ids of accepted deliveries remembered (within ``tolerance_s``)
            so that a replayed delivery is acknowledged but not processed again. With a
            ``share``, a delivery id is also recorded there: a replay that reaches another
            worker process is refused too.
        max_body_bytes: Larger delivery bodies are refused (413) without being buffered.
        on_delivery: Called (sync or async) with every verified delivery, whether or not a
            wait in this process was pending for it: persist results here for tasks whose
            waiter is gone (a disconnected client, a restart, another worker process). Its
            exceptions are logged; the delivery is still acknowledged.
        events_path: The path of the router's Server-Sent Events stream of one task's
            events (``GET``, with ``{task_id}``; see ``wavespeed_async.fastapi.events``);
            ``None``: no such route.
        events_dependencies: FastAPI dependencies of that route only (your
            authentication: anyone who knows a task id could follow it otherwise).
        max_event_streams: Event streams open at once at most (more are answered 503).
        **client_kwargs: Passed to ``Client(...)`` at startup (``api_key``, ``base_url``,
            ``limits``, ``poll``, ``on_task_created``, ...).

    With several worker processes a delivery reaches one of them; pass ``share=`` (a
    ``redis://`` URL, see ``docs/scaling.md``) so that it wakes the wait in whichever worker
    holds it, and so that the workers share one account's limits. Without a share, a wait
    in another worker falls back to polling (every ``webhook_fallback_s``).
    """

    __slots__ = (
        "_client",
        "_client_kwargs",
        "_given_secret",
        "_secret",
        "_secret_error",
        "_secret_failures",
        "_secret_lock",
        "_secret_retry_at",
        "deliveries_received",
        "deliveries_rejected",
        "deliveries_replayed",
        "events",
        "max_body_bytes",
        "on_delivery",
        "public_url",
        "replays",
        "router",
        "tolerance_s",
        "webhook_path",
    )

    def __init__(
        self,
        *,
        public_url: str | None = None,
        webhook_path: str = DEFAULT_WEBHOOK_PATH,
        webhook_secret: str | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
        on_delivery: TaskHook | None = None,
        events_path: str | None = DEFAULT_EVENTS_PATH,
        events_dependencies: Sequence[Any] = (),
        max_event_streams: int = DEFAULT_MAX_EVENT_STREAMS,
        **client_kwargs: Any,
    ) -> None:
        # Credentials masked first, so that no traceback's locals show them (a bad
        # setting below raises with this frame's locals: client_kwargs included).
        if isinstance(client_kwargs.get("api_key"), str):
            client_kwargs["api_key"] = masked(client_kwargs["api_key"])
        if isinstance(webhook_secret, str):
            webhook_secret = masked(webhook_secret)
        # What __repr__ reads, set before anything can raise (a traceback printed with its
        # locals calls it on a half-built instance).
        self.public_url = public_url
        self.webhook_path = webhook_path
        self._client: Client | None = None
        self.deliveries_received = 0
        self.deliveries_rejected = 0
        if not webhook_path.startswith("/"):
            raise ValidationError(
                "webhook_path", f"webhook_path: {webhook_path!r}; allowed: a path starting with /"
            )
        if webhook_secret is not None:
            check_secret(webhook_secret, "webhook_secret")
        self._given_secret = webhook_secret
        self._secret = webhook_secret
        self._secret_lock: anyio.Lock | None = None
        self._secret_error: WaveSpeedError | None = None
        self._secret_failures = 0
        self._secret_retry_at = float("-inf")
        self.tolerance_s = check_tolerance(tolerance_s)
        self.replays = ReplayGuard(tolerance_s=self.tolerance_s, max_ids=replay_cache_size)
        self.max_body_bytes = max_body_bytes
        self.on_delivery = on_delivery
        self._client_kwargs = client_kwargs
        self.deliveries_replayed = 0
        self.router = APIRouter()
        self.router.add_api_route(
            webhook_path,
            self._receive_webhook,
            methods=["POST"],
            include_in_schema=False,
            response_model=None,
        )
        #: The event-stream route (``None`` without ``events_path``).
        self.events: TaskEventRoute | None = None
        if events_path is not None:
            self.events = TaskEventRoute(
                self.get_client, path=events_path, max_streams=max_event_streams
            )
            self.events.add_to(self.router, events_dependencies)

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "not open"
        return (
            f"<WaveSpeed {state} webhook={self.webhook_url} "
            f"deliveries_received={self.deliveries_received} "
            f"deliveries_rejected={self.deliveries_rejected}>"
        )

    # -- lifecycle -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Open the Client for the app's lifetime; pass as ``FastAPI(lifespan=...)``.

        Raises:
            ValidationError: no API key, or a Client setting out of range (startup fails).
            RuntimeError: this WaveSpeed is already open (one app at a time).
        """
        if self._client is not None:
            raise RuntimeError("this WaveSpeed is already open; use one per app")
        user_hook: TaskHook | None = self._client_kwargs.get("on_task_created")

        async def on_task_created(pred: Prediction) -> None:
            _record_created(pred)
            if user_hook is not None:
                result = user_hook(pred)
                if inspect.isawaitable(result):
                    await result

        client = Client(**{**self._client_kwargs, "on_task_created": on_task_created})
        self._secret_lock = anyio.Lock()
        self._client = client
        try:
            async with client:
                log.info("WaveSpeed client open; webhooks: %s", self.webhook_url or "off")
                yield
        finally:
            self._client = None
            # A restarted app fetches the secret again (it may have been rotated).
            self._secret = self._given_secret
            self._secret_error = None
            self._secret_failures = 0
            self._secret_retry_at = float("-inf")

    @property
    def client(self) -> Client:
        """The app's Client.

        Raises:
            ClientClosedError: the app is not running (``lifespan`` not entered).
        """
        if self._client is None:
            raise ClientClosedError(
                "no open Client: pass lifespan=ws.lifespan to FastAPI(...), or enter "
                "`async with ws.lifespan(app):` in your own lifespan"
            )
        return self._client

    def get_client(self) -> Client:
        """A dependency: ``client: Annotated[Client, Depends(ws.get_client)]``."""
        return self.client

    @property
    def webhook_url(self) -> str | None:
        """Where WaveSpeed delivers results (``None`` without a ``public_url``)."""
        if not self.public_url:
            return None
        return self.public_url.rstrip("/") + self.webhook_path

    # -- running ---------------------------------------------------------------------

    async def run(
        self,
        request: Request,
        model: str | TypedRequest,
        input: Mapping[str, Any] | None = None,
        *,
        timeout: float | Unset | None = UNSET,
        sync: bool = False,
    ) -> Prediction:
        """``client.run(...)`` with this app's webhook, stopped if the HTTP client leaves.

        Args:
            request: The handler's request, watched for a disconnect.
            model, input, timeout: As for ``Client.run``.
            sync: Use ``enable_sync_mode`` instead of a webhook; if the server's wait runs
                out, the task is polled by id, never submitted again.

        Raises:
            ClientDisconnected: the HTTP client left first; the task keeps running on
                WaveSpeed and its id is logged.
            Everything ``Client.run`` raises.
        """
        webhook = None if sync else self.webhook_url
        return await run_until_disconnected(
            request, self.client.run, model, input, timeout=timeout, webhook=webhook, sync=sync
        )

    # -- webhooks --------------------------------------------------------------------

    async def webhook_secret(self) -> str:
        """The signing secret: the one given, else fetched from WaveSpeed and cached.

        Raises:
            WaveSpeedError: the fetch failed or answered an empty secret (then no new
                fetch is made for a while: the same error is raised again).
        """
        if self._secret is None:
            lock = self._secret_lock
            if lock is None:  # not open: self.client raises the explanation
                return check_secret(await self.client.webhook_secret(), "webhook secret")
            async with lock:
                if self._secret is None:
                    self._secret = await self._fetch_secret()
        return self._secret

    async def _fetch_secret(self) -> str:
        if self._secret_error is not None and anyio.current_time() < self._secret_retry_at:
            raise self._secret_error
        try:
            secret = await self.client.webhook_secret()
            try:
                check_secret(secret, "webhook secret")
            except ValidationError as exc:
                raise DecodeError(
                    f"the server answered an unusable webhook secret: {exc}"
                ) from None
        except WaveSpeedError as exc:
            self._secret_failures += 1
            wait = min(SECRET_RETRY_S * 2 ** (self._secret_failures - 1), SECRET_RETRY_MAX_S)
            self._secret_error = exc
            self._secret_retry_at = anyio.current_time() + wait
            raise
        self._secret_error = None
        self._secret_failures = 0
        return secret

    async def _receive_webhook(self, request: Request) -> Response:
        """Verify one delivery against its raw body and wake the wait for its task."""
        length = request.headers.get("content-length", "")
        if length.isdecimal() and int(length) > self.max_body_bytes:
            return self._reject(413, "the body is larger than a WaveSpeed delivery")
        try:
            body = await _read_limited(request, self.max_body_bytes)
        except ClientDisconnect:
            return self._reject(400, "the sender disconnected")
        if body is None:
            return self._reject(413, "the body is larger than a WaveSpeed delivery")
        if self._client is None:
            return _problem(503, "the app is not running")
        try:
            # Headers and timestamp first: junk costs no request to WaveSpeed.
            delivery = read_headers(request.headers, tolerance_s=self.tolerance_s)
        except WebhookVerificationError as exc:
            return self._reject(401, f"webhook verification failed: {exc}")
        except (ValueError, OverflowError) as exc:  # defence in depth
            # Headers are attacker-controlled: whatever the verifier trips on, it is a 4xx.
            return self._reject(400, f"webhook verification failed: {type(exc).__name__}")
        try:
            secret = await self.webhook_secret()
        except WaveSpeedError as exc:
            # Not the sender's fault: ask it to come again (polling covers it if it does not).
            log.warning("cannot verify a webhook delivery: the secret is unavailable: %s", exc)
            return _problem(503, "the webhook secret is unavailable")
        try:
            check_signature(secret, delivery, body)
        except WebhookVerificationError as exc:
            return self._reject(401, f"webhook verification failed: {exc}")
        try:
            pred = decode_delivery(body)
        except WebhookVerificationError as exc:  # signed, yet not a prediction
            return self._reject(400, str(exc))
        if not await first_time(self.replays, self.client.flow.share, delivery):
            self.deliveries_replayed += 1
            log.info(
                "webhook: delivery %.80r for task %s replayed; ignored",
                delivery.id,
                pred.id,
                extra={"task_id": pred.id},
            )
            return JSONResponse({"received": pred.id})
        self.deliveries_received += 1
        woke = self.client.deliver(pred)
        log.debug(
            "webhook: task %s %s (%s)",
            pred.id,
            pred.status,
            "a wait was pending" if woke else "no wait pending here",
            extra={"task_id": pred.id},
        )
        hook = self.on_delivery
        if hook is not None:
            try:
                result = hook(pred)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "on_delivery hook failed for task %s", pred.id, extra={"task_id": pred.id}
                )
        return JSONResponse({"received": pred.id})

    def _reject(self, status: int, detail: str) -> Response:
        self.deliveries_rejected += 1
        log.warning("rejected a webhook delivery (%d): %s", status, detail)
        return _problem(status, detail)
