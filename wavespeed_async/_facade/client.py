"""The Client: one transport, shared flow control, every wait in one place, typed results."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import platform
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import msgspec

from wavespeed_async._core.errors import (
    APIStatusError,
    ClientClosedError,
    DecodeError,
    ServerError,
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
from wavespeed_async._core.secret import Secret
from wavespeed_async._core.settings import (
    FlowLimits,
    PollConfig,
    RetryConfig,
    SizeLimits,
    Timeouts,
)
from wavespeed_async._facade.bulk import (
    DEFAULT_SUBMIT_GRACE_S,
    BulkRun,
    default_concurrency,
    submit_in_flight,
)
from wavespeed_async._facade.jobs import run_job, wait_job
from wavespeed_async._http.base import HTTPTransport
from wavespeed_async._http.media import Downloader, FileInput, is_private_host
from wavespeed_async._http.transport import AiohttpTransport, check_proxy
from wavespeed_async._runtime import upload as _upload
from wavespeed_async._runtime.api import Api, result_path
from wavespeed_async._runtime.fdlimit import fit_to_file_limit
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.share import Share, default_namespace, resolve_share
from wavespeed_async._runtime.waits import Waits, finished
from wavespeed_async._version import __version__

__all__ = ["DEFAULT_BASE_URL", "Client", "TaskCreatedHook"]

log = logging.getLogger("wavespeed_async")

DEFAULT_BASE_URL: Final = "https://api.wavespeed.ai"

#: Called with the created Prediction the moment a task id exists, before any polling.
TaskCreatedHook = Callable[[Prediction], Awaitable[None] | None]
ModelOrRequest = str | TypedRequest
_S = TypeVar("_S")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_UNSET: Final = _Unset()


def _result_of(pred: Prediction | None, task_id: str) -> Prediction:
    """The task in a result answer (a DecodeError if the answer has none)."""
    if pred is None:
        raise DecodeError("the result has no task in it", task_id=task_id)
    return pred


def _require_asyncio() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; a ``ClientClosedError`` saying so under any other."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise ClientClosedError(
            "wavespeed-async runs on asyncio only (it is built on aiohttp); no asyncio event "
            "loop is running here. Under anyio, use anyio.run(main) or "
            "anyio.run(main, backend='asyncio'), not the trio backend"
        ) from None


class Client:
    """An async client for the WaveSpeedAI API.

    Use it as ``async with Client() as client:``, or create it once (e.g. in a web app's
    lifespan) and ``await client.aclose()`` at the end. One Client owns one transport
    (a bounded connection pool) and one set of limits (:class:`FlowLimits`) shared by
    every call made through it. A Client belongs to the asyncio event loop it is first
    used on. Its settings are fixed when it is built.

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
            account: a URL whose scheme an installed backend serves (``redis://``, with
            the ``redis`` extra), or a backend object such as
            ``wavespeed_async.redis.RedisShare``. ``None``: the limits hold within this
            Client only.
        transport: Sends every API request (see :class:`HTTPTransport`): default an
            :class:`AiohttpTransport` with ``limits.max_connections`` connections. The
            Client closes it when it closes.
        proxy: An ``http://[user:password@]host:port`` proxy for API requests, uploads
            and downloads (its password is never shown).
        trust_env: Take proxies from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``.

    Raises:
        ValidationError: no API key was given or found in the environment, or a setting is
            out of range.
    """

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
        transport: HTTPTransport | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
    ) -> None:
        raw = api_key if api_key is not None else os.environ.get("WAVESPEED_API_KEY", "")
        # Held masked from here on: no traceback's locals can show it.
        key, raw, api_key = Secret(raw.strip()), "", None
        if not key:
            raise ValidationError(
                "api_key",
                "api_key: no API key; pass Client(api_key=...) or set WAVESPEED_API_KEY "
                "(the built-in emulator accepts any non-empty key; point "
                "WAVESPEED_BASE_URL at it too)",
            )
        proxy = check_proxy(proxy)  # masked: no traceback's locals show its password
        url = base_url or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(
                "base_url", f"base_url: {url!r} is not allowed; allowed: an http(s) URL"
            )
        self.base_url = url.rstrip("/")
        self._key = key
        self._timeouts = _setting("timeouts", timeouts, Timeouts)
        self._sizes = _setting("sizes", sizes, SizeLimits)
        self._retry = _setting("retry", retry, RetryConfig)
        self._poll = _setting("poll", poll, PollConfig)
        self._limits = _setting("limits", limits, FlowLimits)
        if allow_private_media is None:
            allow_private_media = is_private_host(parts.hostname or "")
        self._allow_private_media = bool(allow_private_media)
        if transport is not None and (proxy is not None or trust_env):
            raise ValidationError(
                "proxy",
                "proxy/trust_env: they configure the default transport; with transport=, "
                "give them to it (AiohttpTransport(proxy=..., trust_env=...))",
            )
        if transport is not None and not isinstance(transport, HTTPTransport):
            raise ValidationError(
                "transport",
                f"transport: {type(transport).__name__} has no send()/aclose(); allowed: "
                "an object implementing wavespeed_async.HTTPTransport",
            )
        self._given_transport = transport
        self._proxy = proxy
        self._trust_env = bool(trust_env)
        self.on_task_created = on_task_created
        self._extra_headers = {
            "User-Agent": f"wavespeed-async/{__version__}",
            "X-Client-Name": "wavespeed-async",
            "X-Client-Version": __version__,
            "X-Client-OS": platform.system().lower() or "unknown",
            **(headers or {}),
        }
        self._rng = random.Random(seed)
        self._share = resolve_share(share)
        share = None  # a URL's password stays only inside the share
        self._namespace = default_namespace(key, self.base_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: Api | None = None
        self._waits: Waits | None = None
        self._flow: FlowControl | None = None
        self._downloader: Downloader | None = None
        self._closed = False
        self._polls_closed = 0  # polls answered, by the Api, once closed
        self.tasks_created = 0

    # -- settings: fixed when the Client is built ---------------------------------------

    @property
    def timeouts(self) -> Timeouts:
        """Connect / per-request / whole-task timeouts."""
        return self._timeouts

    @property
    def sizes(self) -> SizeLimits:
        """Caps on answer and download sizes."""
        return self._sizes

    @property
    def retry(self) -> RetryConfig:
        """Retry attempts and backoff."""
        return self._retry

    @property
    def poll(self) -> PollConfig:
        """Adaptive polling settings."""
        return self._poll

    @property
    def limits(self) -> FlowLimits:
        """The limits shared by every call (as fitted to the open-file limit once open)."""
        return self._limits

    @property
    def allow_private_media(self) -> bool:
        """Whether :meth:`download` and :meth:`upload` may reach internal addresses."""
        return self._allow_private_media

    # -- lifecycle ---------------------------------------------------------------------

    def __repr__(self) -> str:
        if "tasks_created" not in vars(self):  # __init__ raised (a traceback shows self)
            return "<Client (not constructed)>"
        state = "closed" if self._closed else ("open" if self._api else "not opened")
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
        """Close the transport and pools. Idempotent; the Client cannot be used afterwards."""
        self._closed = True
        waits, self._waits = self._waits, None
        if waits is not None:
            # Pending waits end with ClientClosedError; polls in flight are cancelled.
            cancelled = waits.close()
            if cancelled:
                await asyncio.gather(*cancelled, return_exceptions=True)
        api, self._api = self._api, None
        downloader, self._downloader = self._downloader, None
        if api is not None:
            self._polls_closed += api.polls_answered
            api.close()  # the polls' deadline timer: no poll is in flight any more
        if self._share is not None:
            await self._share.aclose()
        if api is not None:
            await api.transport.aclose()
        elif self._given_transport is not None:
            await self._given_transport.aclose()
        if downloader is not None:
            await downloader.aclose()

    @property
    def polls_sent(self) -> int:
        """Polls of :meth:`wait` that got their task's state (the submit's answer and
        webhook deliveries not counted)."""
        api = self._api
        return self._polls_closed + (api.polls_answered if api else 0)

    @property
    def deliveries(self) -> int:
        """Webhook deliveries that ended, or will end, a wait of this Client."""
        return self._waits.deliveries if self._waits else 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _open(self) -> Api:
        """The API caller for the running loop, opening the Client on first use."""
        api = self._api
        if api is not None and self._loop is asyncio.get_running_loop():
            return api
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        loop = _require_asyncio()
        if self._loop is not None and self._loop is not loop:
            raise ClientClosedError(
                "this Client belongs to another event loop; create one Client per event loop "
                "(for example in your app's lifespan), not at import time"
            )
        held = 0 if self._share is None else self._share.connections
        self._limits = fit_to_file_limit(self._limits, reserved=held)
        self._loop = loop
        flow = self._flow = FlowControl(self._limits, clock=loop.time, share=self._share)
        transport = self._given_transport or AiohttpTransport(
            max_connections=self._limits.max_connections,
            proxy=self._proxy,
            trust_env=self._trust_env,
        )
        api = self._api = Api(
            transport,
            base_url=self.base_url,
            headers={"Authorization": self._key.auth_header(), **self._extra_headers},
            timeouts=self._timeouts,
            sizes=self._sizes,
            retry=self._retry,
            flow=flow,
            rng=self._rng,
        )
        waits = self._waits = Waits(
            loop,
            poll=api.poll,
            poll_request=api.poll_request,
            config=self._poll,
            flow=flow,
            share=self._share,
        )
        if self._share is not None:
            self._share.bind(
                self._limits,
                namespace=self._namespace,
                clock=loop.time,
                on_delivery=waits.deliver_remote,
                on_cooldown=flow.note_cooldown,
            )
        return api

    @property
    def flow(self) -> FlowControl:
        """The flow control shared by every call on this Client."""
        self._open()
        if self._flow is None:  # pragma: no cover - _open() always sets it
            raise ClientClosedError("this Client is closed")
        return self._flow

    def _waiting(self) -> Waits:
        self._open()
        if self._waits is None:  # pragma: no cover - _open() always sets it
            raise ClientClosedError("this Client is closed")
        return self._waits

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
        api = self._open()
        flow = api.flow
        start = await flow.acquire_start()
        try:
            with submit_in_flight():
                env = await api.submit(
                    path,
                    body,
                    prediction_decoder,
                    params={"webhook": webhook} if webhook else None,
                    timeout_s=self._timeouts.sync_request_s if sync else None,
                )
        except APIStatusError as exc:
            if exc.task_id is not None:
                # An error answer that names a task: the task exists. Report it as created.
                await self._task_created(Prediction(id=exc.task_id, model=path), path, False)
            raise
        finally:
            flow.start_sent(start)
        if env.data is None:
            raise DecodeError(f"submit to {path}: the answer has no task in it")
        await self._task_created(env.data, path, webhook is not None)
        return env.data

    async def _task_created(self, pred: Prediction, model: str, webhook: bool) -> None:
        self.tasks_created += 1
        self._waiting().created(pred.id, model, webhook=webhook)
        log.info("task %s created for %s", pred.id, model, extra={"task_id": pred.id})
        hook = self.on_task_created
        if hook is None:
            return
        try:
            result = hook(pred)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The task exists whatever the hook does; its id is still returned.
            log.exception(
                "on_task_created hook failed for task %s", pred.id, extra={"task_id": pred.id}
            )

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
        waits = self._waiting()
        if self._share is not None:
            self._share.publish(prediction)  # wakes the wait in whichever process holds it
        return waits.deliver(prediction)

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
            return finished(pred)
        return await self._waiting().wait(task_id, pred, limit)

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
                log.info(
                    "task %s: %s; polling it", exc.task_id, exc, extra={"task_id": exc.task_id}
                )
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
                typed requests, consumed lazily: at most about ``2 * concurrency`` are held
                at once, so a generator of a million inputs runs in memory that does not
                grow.
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
        return BulkRun(
            run_job(self, model, timeout=timeout, webhook=webhook),
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
        result's ``input`` is the id. Each wait holds one of the Client's in-flight slots,
        like a :meth:`run`.
        """
        self._open()
        return BulkRun(
            wait_job(self, timeout=timeout),
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

    def _media_options(self) -> dict[str, Any]:
        """What the media sessions (downloads, upload PUTs) share with the API's: the
        proxy settings, when the Client built its transport."""
        transport = self._open().transport
        if isinstance(transport, AiohttpTransport):
            return transport.session_options()
        return {"proxy": None, "trust_env": False}

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
            **self._media_options(),
        )

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
        options = self._media_options()
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
                **options,
            )
        return await self._downloader.save(prediction, directory, stem)


def _setting(name: str, value: _S | None, kind: type[_S]) -> _S:
    """``value`` (default ``kind()``), a ``ValidationError`` naming ``name`` if not a ``kind``."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ValidationError(
            name, f"{name}: a {kind.__name__}, not {type(value).__name__}", allowed=kind.__name__
        )
    return value
