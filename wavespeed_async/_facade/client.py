"""The Client: one aiohttp session, shared flow control, typed results."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import os
import platform
import random
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp
import msgspec

from wavespeed_async._core.errors import (
    APIStatusError,
    ClientClosedError,
    DecodeError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import (
    Prediction,
    any_decoder,
    balance_decoder,
    prediction_decoder,
    webhook_secret_decoder,
)
from wavespeed_async._core.requests import TypedRequest, coerce_request
from wavespeed_async._core.schedule import DurationEstimator
from wavespeed_async._core.secret import Secret
from wavespeed_async._core.settings import PollConfig, RetryConfig, SizeLimits, Timeouts
from wavespeed_async._facade.bulk import (
    DEFAULT_SUBMIT_GRACE_S,
    BulkRun,
    default_concurrency,
    submit_in_flight,
)
from wavespeed_async._http import upload as _upload
from wavespeed_async._http.media import (
    Downloader,
    FileInput,
    is_private_host,
)
from wavespeed_async._runtime.api import Transport, result_path
from wavespeed_async._runtime.fdlimit import fit_to_file_limit
from wavespeed_async._runtime.flow import FlowControl, FlowLimits
from wavespeed_async._runtime.share import Share, default_namespace, resolve_share
from wavespeed_async._runtime.waits import PollEntry, PollScheduler, WaitExpired
from wavespeed_async._version import __version__

__all__ = ["DEFAULT_BASE_URL", "Client", "TaskCreatedHook"]

log = logging.getLogger("wavespeed_async")

DEFAULT_BASE_URL: Final = "https://api.wavespeed.ai"
#: Submit times remembered for tasks not yet waited on (bounded, oldest dropped first).
_MAX_REMEMBERED: Final = 100_000
_V = TypeVar("_V")

#: Called with the created Prediction the moment a task id exists, before any polling.
TaskCreatedHook = Callable[[Prediction], Awaitable[None] | None]
ModelOrRequest = str | TypedRequest


def _unopened_clock() -> float:
    return asyncio.get_running_loop().time()


def _result_of(pred: Prediction | None, task_id: str) -> Prediction:
    """The task in a result answer (a DecodeError if the answer has none)."""
    if pred is None:
        raise DecodeError("the result has no task in it", task_id=task_id)
    return pred


def _bounded_put(d: collections.OrderedDict[str, _V], key: str, value: _V) -> None:
    d[key] = value
    if len(d) > _MAX_REMEMBERED:
        d.popitem(last=False)


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_UNSET: Final = _Unset()


class _SetUntilOpen(Generic[_V]):
    """A Client setting that can be replaced until the Client opens, and not after (an
    ``AttributeError`` naming it); a value of another type is a ``ValidationError``. The
    value lives in the Client's ``_<name>`` attribute."""

    def __init__(self, kind: type[_V]) -> None:
        self._kind = kind
        self._name = self._attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._attr = name, f"_{name}"

    @overload
    def __get__(self, client: None, owner: type) -> _SetUntilOpen[_V]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> _V: ...
    def __get__(self, client: Client | None, owner: type) -> _V | _SetUntilOpen[_V]:
        if client is None:
            return self
        value: _V = getattr(client, self._attr)
        return value

    def __set__(self, client: Client, value: _V) -> None:
        if client._transport is not None:
            raise AttributeError(
                f"{self._name}: fixed once the Client is open (its connections and limits "
                f"are built from it); pass it to Client(...), or create another Client"
            )
        if not isinstance(value, self._kind):
            raise ValidationError(
                self._name,
                f"{self._name}: a {self._kind.__name__}, not {type(value).__name__}",
                allowed=self._kind.__name__,
            )
        setattr(client, self._attr, value)


class Client:
    """An async client for the WaveSpeedAI API.

    Use it as ``async with Client() as client:``, or create it once (e.g. in a web app's
    lifespan) and ``await client.aclose()`` at the end. One Client owns one aiohttp session
    with a bounded connection pool, and one set of limits (:class:`FlowLimits`) shared by
    every call made through it. A Client belongs to the event loop it is first used on.

    Args:
        api_key: The API key; default ``$WAVESPEED_API_KEY``. Never shown in a repr, a log
            line or an error.
        base_url: Default ``$WAVESPEED_BASE_URL``, else ``https://api.wavespeed.ai``.
        timeouts: Connect / per-request / whole-task timeouts.
        retry: Retry attempts and backoff.
        poll: Adaptive polling settings.
        limits: In-flight cap, start rate, poll budget and pool size, shared by all calls.
        on_task_created: Called (sync or async) with each created Prediction the moment its
            id exists, before polling: persist ids here so no task is ever lost.
        headers: Extra headers for API requests.
        sizes: Caps on API answer and downloaded output sizes.
        allow_private_media: Let :meth:`download` fetch outputs from, and :meth:`upload`
            send files to, loopback, private and link-local addresses. Off by default (a
            URL from the server could point at a cloud metadata service), and on by itself
            when ``base_url``'s host is such an address (a local emulator).
        seed: Seeds the retry jitter (for reproducible tests).
        share: Share the limits and webhook wake-ups with every other process of the
            account: a ``redis://`` URL, or a ``wavespeed_async.redis.RedisShare`` (extra
            ``redis``). ``None``: the limits hold within this Client only.

    Raises:
        ValidationError: no API key was given or found in the environment, or a setting is
            out of range.
    """

    # Settings fixed once the Client is open: its pools, limits and transport are built from
    # them then, so a later assignment would take effect in some places and not in others;
    # it is refused instead. (``poll`` and ``on_task_created`` are read at each use.)
    timeouts = _SetUntilOpen(Timeouts)
    sizes = _SetUntilOpen(SizeLimits)
    retry = _SetUntilOpen(RetryConfig)
    #: As fitted to the process's open-file limit once the Client is open.
    limits = _SetUntilOpen(FlowLimits)

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryConfig | None = None,
        poll: PollConfig | None = None,
        limits: FlowLimits | None = None,
        on_task_created: TaskCreatedHook | None = None,
        headers: Mapping[str, str] | None = None,
        sizes: SizeLimits | None = None,
        allow_private_media: bool | None = None,
        seed: int | None = None,
        share: str | Share | None = None,
    ) -> None:
        raw = api_key if api_key is not None else os.environ.get("WAVESPEED_API_KEY", "")
        # Held masked from here on: no traceback's locals can show it.
        key, raw, api_key = Secret(raw.strip()), "", None
        if not key:
            raise ValidationError(
                "api_key",
                "api_key: no API key; pass Client(api_key=...) or set WAVESPEED_API_KEY "
                "(the built-in emulator accepts any non-empty key)",
            )
        url = base_url or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(
                "base_url", f"base_url: {url!r} is not allowed; allowed: an http(s) URL"
            )
        self.base_url = url.rstrip("/")
        self._key = key
        self._timeouts = timeouts or Timeouts()
        self._sizes = sizes or SizeLimits()
        if allow_private_media is None:
            allow_private_media = is_private_host(parts.hostname or "")
        self._allow_private_media = allow_private_media
        self._retry = retry or RetryConfig()
        self.poll = poll or PollConfig()
        self._limits = limits or FlowLimits()
        self.on_task_created = on_task_created
        self._extra_headers = {
            "User-Agent": f"wavespeed-async/{__version__}",
            "X-Client-Name": "wavespeed-async",
            "X-Client-Version": __version__,
            "X-Client-OS": platform.system().lower() or "unknown",
            **(headers or {}),
        }
        self._rng = random.Random(seed)
        # -- share: limits and wake-ups shared with other processes (see _share.py)
        self._share = resolve_share(share)
        self._namespace = default_namespace(key, self.base_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The event loop's monotonic clock (cheaper than anyio.current_time on hot paths).
        self._now: Callable[[], float] = _unopened_clock
        self._session: aiohttp.ClientSession | None = None
        self._downloader: Downloader | None = None
        self._transport: Transport | None = None
        self._flow: FlowControl | None = None
        self._closed = False
        self._estimators: dict[str, DurationEstimator] = {}
        self._submitted: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()
        #: Polls every wait() of this Client from one timer (created on first use).
        self._scheduler: PollScheduler | None = None
        #: Deliveries that came before their wait() started (bounded, oldest dropped).
        self._early: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._webhook_tasks: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.tasks_created = 0
        self._polls_closed = 0  # polls_sent of the transport, once closed
        self.deliveries = 0

    # -- lifecycle ---------------------------------------------------------------------

    def __repr__(self) -> str:
        if "deliveries" not in vars(self):  # __init__ raised (a traceback shows self)
            return "<Client (not constructed)>"
        state = "closed" if self._closed else ("open" if self._session else "not opened")
        flow = self._flow
        in_flight = int(flow.in_flight.borrowed_tokens) if flow else 0
        return (
            f"<Client {self.base_url} {state} tasks_created={self.tasks_created} "
            f"in_flight={in_flight} polls_sent={self.polls_sent}>"
        )

    async def __aenter__(self) -> Client:
        self._open()
        if self._share is not None:
            try:
                await self._share.start()  # fail early (ConnectError) if the share is down
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools. Idempotent; the Client cannot be used afterwards."""
        self._closed = True
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            # Pending waits end with ClientClosedError; polls in flight are cancelled.
            cancelled = scheduler.close()
            if cancelled:
                await asyncio.gather(*cancelled, return_exceptions=True)
        session, downloader = self._session, self._downloader
        self._session = self._downloader = None
        transport, self._transport = self._transport, None
        if transport is not None:
            self._polls_closed += transport.polls_answered
            transport.close()  # the polls' deadline timer: no poll is in flight any more
        if self._share is not None:
            await self._share.aclose()
        if session is not None:
            await session.close()
        if downloader is not None:
            await downloader.aclose()

    @property
    def polls_sent(self) -> int:
        """Polls of :meth:`wait` that got their task's state (the submit's answer and
        webhook deliveries not counted)."""
        transport = self._transport
        return self._polls_closed + (transport.polls_answered if transport else 0)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _open(self) -> Transport:
        """The transport for the running loop, opening the session on first use."""
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise ClientClosedError(
                "this Client belongs to another event loop; create one Client per event loop "
                "(for example in your app's lifespan), not at import time"
            )
        if self._transport is None:
            held = 0 if self._share is None else self._share.connections
            self._limits = fit_to_file_limit(self._limits, reserved=held)
            self._loop = loop
            self._now = loop.time
            # This session only ever talks to base_url (redirects are not followed; uploads
            # and media have sessions of their own): the pool's limit is the host's, and a
            # per-host limit would only add aiohttp's per-host bookkeeping to every request.
            connector = aiohttp.TCPConnector(limit=self._limits.max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # The API keeps no session state in cookies: a server that sets them makes
                # the client neither store nor send anything (nor grow with what it sets).
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
                headers=Transport.session_headers(self._key, self._extra_headers),
            )
            if self._flow is None:
                self._flow = FlowControl(self._limits, clock=loop.time, share=self._share)
                if self._share is not None:
                    self._share.bind(
                        self._limits,
                        namespace=self._namespace,
                        clock=loop.time,
                        on_delivery=self._wake_remote,
                        on_cooldown=self._flow.note_cooldown,
                    )
            self._transport = Transport(
                self._session,
                base_url=self.base_url,
                timeouts=self._timeouts,
                sizes=self._sizes,
                retry=self._retry,
                flow=self._flow,
                rng=self._rng,
            )
        return self._transport

    @property
    def flow(self) -> FlowControl:
        """The flow control shared by every call on this Client."""
        self._open()
        if self._flow is None:  # pragma: no cover - _open() always sets it
            raise ClientClosedError("this Client is closed")
        return self._flow

    # -- tasks -------------------------------------------------------------------------

    async def submit(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None = None,
        *,
        webhook: str | None = None,
        sync: bool = False,
    ) -> Prediction:
        """Submit one task (one POST) and return it as created.

        Args:
            model: A model path such as ``"wavespeed-ai/flux-kontext-dev"``, or a typed
                request such as ``FluxKontextDev(prompt=...)`` (then ``input`` is omitted).
            input: The model's inputs, a flat mapping.
            webhook: A URL that the server POSTs the finished task to.
            sync: Ask the server to hold the answer until the task ends
                (``enable_sync_mode``). If the connection is lost while it holds, the task
                id is lost with it: prefer polling or webhooks for bulk work.

        Raises:
            ValidationError: bad input, before anything is sent.
            SubmissionOutcomeUnknown: the answer was lost; a task may exist. Not re-sent.
            RateLimitError, APIStatusError, TransportError: the submit was refused or could
                not be sent (re-sent first where provably safe).
        """
        path, body = coerce_request(model, input)
        if sync:
            body["enable_sync_mode"] = True
        if webhook is not None:
            if urlsplit(webhook).scheme not in ("http", "https"):
                raise ValidationError(
                    "webhook", f"webhook: {webhook!r:.80} is not allowed; allowed: an http(s) URL"
                )
            if body.get("enable_base64_output"):
                raise ValidationError(
                    "webhook",
                    "webhook: cannot be combined with enable_base64_output (the server "
                    "rejects it); allowed: one or the other",
                )
        transport = self._open()
        flow = self.flow
        start = await flow.acquire_start()
        try:
            with submit_in_flight():
                env = await transport.submit(
                    path,
                    body,
                    prediction_decoder,
                    params={"webhook": webhook} if webhook else None,
                    timeout_s=self._timeouts.sync_request_s if sync else None,
                )
        except APIStatusError as exc:
            if exc.task_id is not None:
                # An error answer that names a task: the task exists. Report it as created.
                await self._task_created(Prediction(id=exc.task_id, model=path), path)
            raise
        finally:
            flow.start_sent(start)
        if env.data is None:
            raise DecodeError(f"submit to {path}: the answer has no task in it")
        if webhook is not None:
            _bounded_put(self._webhook_tasks, env.data.id, None)
        await self._task_created(env.data, path)
        return env.data

    async def _task_created(self, pred: Prediction, model: str) -> None:
        self.tasks_created += 1
        _bounded_put(self._submitted, pred.id, (self._now(), model))
        log.info("task %s created for %s", pred.id, model)
        hook = self.on_task_created
        if hook is None:
            return
        try:
            result = hook(pred)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The task exists whatever the hook does; its id is still returned.
            log.exception("on_task_created hook failed for task %s", pred.id)

    def deliver(self, prediction: Prediction) -> bool:
        """Hand a verified webhook delivery to this Client.

        Wakes the pending :meth:`wait` / :meth:`run` for that task at once, so it returns
        without another poll; with a ``share``, in whichever process it is pending. Only
        terminal statuses are taken. Duplicate and late deliveries are harmless; one that
        comes before its wait starts is remembered (a bounded number of them). Verify
        first: see ``verify_webhook``.

        Returns:
            Whether a wait for this task was pending.
        """
        if not prediction.done:
            return False
        self.deliveries += 1
        if self._share is not None and self._flow is not None:  # opened: the share is bound
            self._share.publish(prediction)  # wakes the wait in whichever process holds it
        scheduler = self._scheduler
        if scheduler is None or not scheduler.deliver(prediction):
            _bounded_put(self._early, prediction.id, prediction)
            return False
        log.debug("task %s %s by webhook", prediction.id, prediction.status)
        return True

    def _wake_remote(self, prediction: Prediction) -> None:
        """A delivery another process published: wake the wait here, if there is one."""
        if not prediction.done:
            return
        scheduler = self._scheduler
        if scheduler is not None and scheduler.deliver(prediction):
            self.deliveries += 1
        elif prediction.id in self._submitted:
            # Created here and not waited for yet: its wait() is about to start.
            self.deliveries += 1
            _bounded_put(self._early, prediction.id, prediction)

    async def get_result(self, task_id: str) -> Prediction:
        """Fetch a task's current state (one GET, retried on transient errors).

        Raises:
            NotFoundError: the id is unknown to the server.
        """
        check_task_id(task_id)
        env = await self._open().call(
            "GET", result_path(task_id), prediction_decoder, task_id=task_id
        )
        return _result_of(env.data, task_id)

    def _estimator(self, model: str) -> DurationEstimator:
        est = self._estimators.get(model)
        if est is None:
            est = self._estimators[model] = DurationEstimator.from_config(self.poll)
        return est

    async def wait(
        self,
        task: Prediction | str,
        *,
        timeout: float | _Unset | None = _UNSET,
    ) -> Prediction:
        """Poll a task until it ends; return it completed.

        Polling adapts to how long this model's tasks take, so it notices the end soon
        after it happens with few requests, within the Client's poll budget.

        Args:
            task: A Prediction from :meth:`submit`, or a task id (also from an earlier
                process).
            timeout: Seconds to wait; default ``timeouts.task_s``; ``None``: no limit.

        Raises:
            TaskFailedError: the task ended failed, cancelled, timed out or deleted.
            TaskTimeoutError: ``timeout`` passed (also a ``TimeoutError``); the task still
                runs on the server: wait again with its id later.
        """
        pred = task if isinstance(task, Prediction) else None
        task_id = check_task_id(task.id if isinstance(task, Prediction) else task)
        limit = self._timeouts.task_s if isinstance(timeout, _Unset) else timeout
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ValidationError(
                "timeout", f"timeout: {limit!r}; allowed: a finite number > 0 or None"
            )
        if pred is not None and pred.done:
            return self._finished(pred)
        early = self._early.pop(task_id, None)
        if early is None and self._share is not None:
            self._open()
            # Delivered to another process before this wait started? (Checked after the
            # subscription exists, so nothing is lost between the two.)
            early = await self._share.stored_result(task_id) or self._early.pop(task_id, None)
        if early is not None:
            return self._finished(early)
        transport = self._open()
        now = self._now()
        known = self._submitted.get(task_id)
        started, model = known if known else (now, pred.model if pred else "")
        entry = PollEntry(
            task_id,
            started=started,
            estimator=self._estimator(model),
            learn=known is not None,
            webhook=task_id in self._webhook_tasks,
            deadline=None if limit is None else now + limit,
            last=pred,
            # Parsed once here: aiohttp parses a str URL at every request, and its parse
            # cache (128 URLs) misses once more tasks than that are polled in turn.
            target=transport.parsed_url(result_path(task_id)),
        )
        scheduler = self._scheduler
        if scheduler is None:  # not "or": a scheduler's truth is its len(), a sum
            scheduler = self._poll_scheduler()
        future = scheduler.add(entry)  # fails with WaitExpired at the deadline
        try:
            result = await future
        except WaitExpired:
            pass
        else:
            self._submitted.pop(task_id, None)
            self._webhook_tasks.pop(task_id, None)
            return self._finished(result)
        finally:
            scheduler.discard(entry)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved, even when this wait was cancelled
        raise TaskTimeoutError(
            f"task {task_id} did not finish within {limit} s; it still runs on the server",
            task_id=task_id,
            last=entry.last,
        )

    def _poll_scheduler(self) -> PollScheduler:
        """The Client's poll timer, created on the Client's loop at first use."""
        self._open()
        scheduler = self._scheduler
        if scheduler is None:
            if self._loop is None or self._flow is None:  # pragma: no cover - set by _open
                raise ClientClosedError("this Client is closed")
            scheduler = self._scheduler = PollScheduler(
                self._loop, self._open().poll, self.poll, self._flow
            )
        return scheduler

    @staticmethod
    def _finished(pred: Prediction) -> Prediction:
        if pred.status != "completed":
            raise TaskFailedError(pred)
        return pred

    async def run(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None = None,
        *,
        timeout: float | _Unset | None = _UNSET,
        webhook: str | None = None,
        sync: bool = False,
    ) -> Prediction:
        """Submit a task and wait for it: the one call most code needs.

        Holds one of the Client's in-flight slots from submit until the task ends.
        ``timeout`` counts from when the task was created. With ``sync=True`` the server
        holds the answer; if its wait runs out, this continues by polling the same task,
        never by submitting again.

        Raises:
            Everything :meth:`submit` and :meth:`wait` raise.
        """
        return await self._run_one(
            model, input, timeout=timeout, webhook=webhook, sync=sync, on_created=None
        )

    async def _run_one(
        self,
        model: ModelOrRequest,
        input: Mapping[str, Any] | None,
        *,
        timeout: float | _Unset | None,
        webhook: str | None,
        sync: bool,
        on_created: Callable[[str], None] | None,
    ) -> Prediction:
        """run(), with ``on_created`` told each task id the moment it exists."""
        flow = self.flow
        token = object()
        await flow.acquire_slot(token)
        try:
            try:
                pred = await self.submit(model, input, webhook=webhook, sync=sync)
            except WaveSpeedError as exc:
                if exc.task_id is None:
                    raise
                # An error answer that names a task: the task exists, so its id is reported
                # whatever comes next.
                if on_created is not None:
                    on_created(exc.task_id)
                if not isinstance(exc, ServerError):
                    raise
                # A server-side error for a task that exists (e.g. a sync wait that ran out,
                # code 5004): follow it by polling, never by submitting again.
                log.info("task %s: %s; polling it", exc.task_id, exc)
                return await self.wait(exc.task_id, timeout=timeout)
            if on_created is not None:
                on_created(pred.id)
            return await self.wait(pred, timeout=timeout)
        finally:
            flow.release_slot(token)

    # -- many tasks ----------------------------------------------------------------------

    def run_many(
        self,
        model: str | None,
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        reorder_window: int | None = None,
        timeout: float | _Unset | None = _UNSET,
        webhook: str | None = None,
        on_task_created: Callable[[int, str], Any] | None = None,
        submit_grace_s: float = DEFAULT_SUBMIT_GRACE_S,
        on_submitting: Callable[[int], Any] | None = None,
    ) -> BulkRun[Any]:
        """Run many tasks; iterate the results as they complete.

        ::

            async with client.run_many(model, inputs, concurrency=64) as results:
                async for r in results:
                    print(r.index, r.id, r.ok, r.error or r.outputs)

        Args:
            model: The model path for dict inputs; ``None`` when every input carries its
                model (a typed request, or a ``(model, dict)`` pair).
            inputs: An iterable or async iterable of dicts, ``(model, dict)`` pairs or
                typed requests, consumed
                lazily: at most about ``2 * concurrency`` are held at once, so a generator of
                a million inputs runs in memory that does not grow.
            concurrency: Jobs at once (default: the Client's ``max_in_flight``). The
                Client's limits still apply across everything it runs.
            ordered: Yield in input order (through a reorder buffer of ``reorder_window``
                results, default ``4 * concurrency``) instead of completion order.
            timeout: Per-task deadline once created (default ``timeouts.task_s``).
            webhook: A webhook URL passed with every submit.
            on_task_created: Called with ``(index, task_id)`` the moment each task id
                exists, before polling: persist ids here.
            submit_grace_s: When the block is left early, how long submits already sent
                may still take to answer (their ids go to ``abandoned``; the indexes still
                unanswered to ``unknown``).
            on_submitting: Called (synchronously) with ``index`` just before the job's
                submit is sent, after it waited for the Client's limits (shared ones
                included): record the intent here, so that a job still waiting when the
                process dies is known never to have been sent. If it returns ``False``,
                the job is not sent: its result has ``id=None`` and a
                :class:`SubmitSkipped` error (counted as ``skipped`` in ``progress``). If
                it raises, the job is not sent: a WaveSpeedError becomes the job's result,
                any other error ends the batch.

        One job's failure is a result with ``.error`` (a WaveSpeedError), never an
        exception that ends the batch; only a bad key (401) or a refused account (403)
        raises, from the ``async for``.
        """
        self._open()

        async def job(index: int, item: Any, created: Callable[[str], None]) -> Prediction:
            job_model: ModelOrRequest | None = model
            job_input: Mapping[str, Any] | None = None
            if isinstance(item, TypedRequest):
                job_model = item
            elif isinstance(item, Mapping):
                job_input = item
            elif (
                isinstance(item, tuple)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], Mapping)
            ):
                job_model, job_input = item
            else:
                raise ValidationError(
                    "inputs",
                    f"inputs[{index}]: {type(item).__name__} is not allowed; allowed: a dict "
                    "of inputs, a (model, dict) pair or a typed request",
                )
            if job_model is None:
                raise ValidationError(
                    "model", f"inputs[{index}]: a dict input needs run_many(model, ...)"
                )
            return await self._run_one(
                job_model,
                job_input,
                timeout=timeout,
                webhook=webhook,
                sync=False,
                on_created=created,
            )

        return BulkRun(
            job,
            inputs,
            concurrency=default_concurrency(self) if concurrency is None else concurrency,
            ordered=ordered,
            reorder_window=reorder_window,
            on_task_created=on_task_created,
            submit_grace_s=submit_grace_s,
            on_submitting=on_submitting,
        )

    def wait_many(
        self,
        task_ids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        ordered: bool = False,
        timeout: float | _Unset | None = _UNSET,
    ) -> BulkRun[str]:
        """Collect results of tasks by id (e.g. from an earlier process's journal).

        The same interface as :meth:`run_many`: ``async with`` it and iterate; each
        result's ``input`` is the id.
        """
        self._open()

        async def job(index: int, task_id: str, created: Callable[[str], None]) -> Prediction:
            check_task_id(task_id, f"task_ids[{index}]")
            created(task_id)
            token = object()
            await self.flow.acquire_slot(token)
            try:
                return await self.wait(task_id, timeout=timeout)
            finally:
                self.flow.release_slot(token)

        return BulkRun(
            job,
            task_ids,
            concurrency=default_concurrency(self) if concurrency is None else concurrency,
            ordered=ordered,
            reorder_window=None,
            on_task_created=None,
        )

    # -- other endpoints ---------------------------------------------------------------

    async def balance(self) -> float:
        """The account balance in USD."""
        env = await self._open().call("GET", "/api/v3/balance", balance_decoder)
        if env.data is None:
            raise DecodeError("the balance answer has no data")
        return env.data.balance

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``whsec_...``), for ``verify_webhook``."""
        env = await self._open().call("GET", "/api/v3/webhook/secret", webhook_secret_decoder)
        if env.data is None:
            raise DecodeError("the webhook secret answer has no data")
        return env.data.secret

    async def delete(self, task_ids: list[str]) -> None:
        """Delete tasks and their outputs on the server (there is no cancel: a running task
        is still billed)."""
        if not task_ids:
            return
        for i, task_id in enumerate(task_ids):
            check_task_id(task_id, f"task_ids[{i}]")
        await self._open().call(
            "POST",
            "/api/v3/predictions/delete",
            any_decoder,
            json_body=msgspec.json.encode({"ids": list(task_ids)}),
        )

    async def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Upload media and return its URL, to pass as a model's ``image`` input.

        Uses the API's two-step flow: a ticket from ``POST /api/v3/media/uploads``, then a
        ``PUT`` of the bytes to the storage URL it names, sent without the API key. A path
        is streamed from disk. Servers without the ticket endpoint (404) get the multipart
        ``POST /api/v3/media/upload/binary`` instead.

        Args:
            file: A path, bytes, or a binary file object. Files are read in worker
                threads, never on the event loop.
            filename: The name to store it under (default: the path's name, or
                ``upload.bin``).
            content_type: Default: guessed from the name.

        Raises:
            ValidationError: the file cannot be read.
            BadRequestError: the file is too large for the server (413).
            APIStatusError: the storage host refused the bytes.
            TransportError: the storage host could not be reached (after retries).
            OutputRefusedError: the storage URL is on an internal address (see
                ``allow_private_media``).
        """
        return await _upload.upload(
            self._open(),
            file,
            filename=filename,
            content_type=content_type,
            retry=self._retry,
            timeouts=self._timeouts,
            rng=self._rng,
            allow_private=self._allow_private_media,
        )

    @property
    def allow_private_media(self) -> bool:
        """Whether :meth:`download` and :meth:`upload` may reach internal addresses: fixed
        when the Client is created (its download pool's connect-time check is built from it),
        so it cannot be switched off later by an assignment that would not take effect."""
        return self._allow_private_media

    async def download(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
    ) -> list[Path]:
        """Save every output of a completed task into ``directory``; return the paths.

        Files are named ``{stem}_{n}{ext}`` (``stem`` defaults to the task id) and written
        atomically (a partial file never appears under the final name). URL outputs are
        streamed to disk through a separate connection pool that never carries the API
        key; base64 outputs are decoded.

        Raises:
            TransportError: an output could not be fetched (after retries).
            DecodeError: an output is neither a URL nor base64.
        """
        self._open()
        if self._downloader is None:
            self._downloader = Downloader(
                timeouts=self._timeouts,
                retry=self._retry,
                rng=self._rng,
                max_connections=self._limits.max_connections,
                user_agent=self._extra_headers["User-Agent"],
                max_bytes=self._sizes.max_download_bytes,
                max_outputs=self._sizes.max_outputs,
                allow_private=self._allow_private_media,
            )
        return await self._downloader.save(prediction, directory, stem)
