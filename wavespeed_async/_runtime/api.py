"""The API caller: send one API call through the transport, decode it, follow the retry policy.

Every decision (retry or not, how long to wait, whether a submit's outcome is unknown) is
made by the pure functions of :mod:`wavespeed_async._core.policy`; this module only carries
them out, and turns each answer into a decoded envelope or an error of the public tree.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping
from typing import Any, Final, Generic, Protocol, TypeVar
from urllib.parse import urlencode

import anyio
import msgspec

from wavespeed_async._core import policy as _policy
from wavespeed_async._core.errors import (
    APIStatusError,
    ConnectError,
    DecodeError,
    RateLimitError,
    SubmissionOutcomeUnknown,
    TransportError,
    WaveSpeedError,
)
from wavespeed_async._core.models import (
    DECODE_FAILURES,
    Prediction,
    error_decoder,
    prediction_decoder,
)
from wavespeed_async._core.policy import FailureKind
from wavespeed_async._core.settings import RetryConfig, SizeLimits, Timeouts
from wavespeed_async._core.text import printable
from wavespeed_async._http.base import HTTPRequest, HTTPResponse, HTTPTransport, RequestTimeout
from wavespeed_async._runtime.attempts import SubmitAttempts, submit_attempts
from wavespeed_async._runtime.events import Events
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.retries import Attempt as _Attempt
from wavespeed_async._runtime.retries import Deciding
from wavespeed_async._runtime.waits.deadlines import Deadlines

__all__ = ["Api", "Envelope", "result_path"]

log = logging.getLogger("wavespeed_async")

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
#: ``Cooldown.until`` while no 429 was ever answered.
_NO_COOLDOWN: Final = -math.inf

_CAUSE_KIND = {
    FailureKind.RESET: "reset",
    FailureKind.TIMEOUT: "timeout",
    FailureKind.MALFORMED: "malformed",
    FailureKind.STATUS: "server_error",
    FailureKind.CONNECT: "connect",
}


class Envelope(Protocol):
    """What every decoded answer looks like: ``{code, message, data}``."""

    @property
    def code(self) -> int | str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def data(self) -> Any: ...


E = TypeVar("E", bound=Envelope)
E_co = TypeVar("E_co", bound=Envelope, covariant=True)


class PollTarget(Protocol):
    """What :meth:`Api.poll` needs of a wait: its task, its request and its deadline."""

    @property
    def task_id(self) -> str: ...
    @property
    def target(self) -> HTTPRequest: ...
    @property
    def deadline(self) -> float | None: ...


class _Decoder(Protocol, Generic[E_co]):
    def decode(self, buf: bytes, /) -> E_co: ...


def _envelope_code(code: int | str | None) -> int | None:
    if code is None or isinstance(code, int):
        return code
    try:
        return int(code)
    except ValueError:
        return None


def _text(body: bytes) -> str:
    return body[:2000].decode("utf-8", "replace")


def _error_message(body: bytes, status: int) -> tuple[str, int | None]:
    """A printable message and the envelope code from an error answer, whatever its shape."""
    try:
        err = error_decoder.decode(body)
    except DECODE_FAILURES:
        text = printable(_text(body).strip(), limit=300)
        return (text or f"HTTP {status} with an empty body"), None
    code = _envelope_code(err.code)
    if code is None:
        code = _envelope_code(err.error_code)
    message = err.message
    if not message and err.error is not None:
        message = err.error if isinstance(err.error, str) else str(err.error)
    shown = printable(message, limit=300) if message else ""
    return (shown or f"HTTP {status}"), code


def _retry_after(resp: HTTPResponse) -> float | None:
    """An error answer's ``Retry-After``, in seconds (read only when an answer failed)."""
    return _policy.parse_retry_after(resp.headers.get("Retry-After"), now=time.time())


class Api(Deciding):
    """Sends API calls for one Client through its transport (not public: the Client owns it).

    Every request carries ``headers``, the API's own (the credentials among them): they
    go to the API's base URL and nowhere else (downloads and uploads to storage hosts use
    sessions of their own, without credentials).
    """

    def __init__(
        self,
        transport: HTTPTransport,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        sizes: SizeLimits,
        retry: RetryConfig,
        flow: FlowControl,
        rng: random.Random,
        events: Events | None = None,
    ) -> None:
        self.transport = transport
        #: The Client's events (retries and cool-downs are told there).
        self.events = events if events is not None else Events()
        self._send = transport.send
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self._json_headers = {**headers, **_JSON_HEADERS}
        self.timeouts = timeouts
        self.max_answer_bytes = sizes.max_answer_bytes
        self.retry = retry
        self.flow = flow
        self.rng = rng
        self.requests_sent = 0
        self.retries = 0
        #: Polls (:meth:`poll`) that got the task's state.
        self.polls_answered = 0
        self._timeout_cache: dict[tuple[float, bool], RequestTimeout] = {}
        #: The ``request_s`` deadlines of the polls in flight, behind one timer.
        self._deadlines = Deadlines(timeouts.request_s)
        # A poll's deadline is kept by ``_deadlines``: no timer of the transport's.
        self._poll_timeout = RequestTimeout(connect_s=timeouts.connect_s)

    def url(self, path: str) -> str:
        """An absolute API URL from a path (``/api/v3/...``)."""
        return self.base_url + path

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> HTTPRequest:
        """An API request (a path is made absolute; ``params`` are encoded into the URL).

        ``timeout_s``: the answer's budget (default ``request_s``); ``None`` with
        :attr:`poll_timeout` kept by the caller (see :meth:`poll_request`).
        """
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        if content_type is not None:
            headers: Mapping[str, str] = {**self.headers, "Content-Type": content_type}
        elif body is not None:
            headers = self._json_headers
        else:
            headers = self.headers
        return HTTPRequest(
            method,
            url,
            headers=headers,
            body=body,
            timeout=self._timeout(timeout_s or self.timeouts.request_s, method == "GET"),
        )

    def poll_request(self, task_id: str) -> HTTPRequest:
        """The GET of a task's result, made once per wait and sent at each of its polls.

        Its deadline is kept by :meth:`poll`, not by the transport.
        """
        return HTTPRequest(
            "GET", self.url(result_path(task_id)), headers=self.headers, timeout=self._poll_timeout
        )

    def close(self) -> None:
        """Stop the polls' deadline timer (once no poll is in flight any more)."""
        self._deadlines.close()

    def _timeout(self, read_s: float, idempotent: bool) -> RequestTimeout:
        key = (read_s, idempotent)
        timeout = self._timeout_cache.get(key)
        if timeout is None:
            timeout = self._timeout_cache[key] = self._make_timeout(read_s, idempotent)
        return timeout

    def _make_timeout(self, read_s: float, idempotent: bool) -> RequestTimeout:
        if idempotent:
            # A GET is retried the same whether it timed out connecting or waiting for its
            # answer, so it needs no separate connect budget: one total deadline of
            # ``read_s`` for the whole attempt, and ``connect_s`` for a new connection.
            return RequestTimeout(connect_s=self.timeouts.connect_s, total_s=read_s)
        # Waiting for a pooled connection and connecting are "connect" phases: a timeout
        # there proves the request never left, so even a submit may be re-sent. The total
        # deadline is the connect budget plus ``read_s``: it always fires after the connect
        # phase (so only ever leaves a submit's outcome unknown when the request may have
        # been sent), and gives the answer at least ``read_s`` and at most ``connect +
        # read_s`` in all, however slowly its bytes trickle in.
        connect = self.timeouts.request_s
        return RequestTimeout(
            connect_s=self.timeouts.connect_s,
            pool_s=connect,
            total_s=connect + read_s,
            read_s=read_s,
        )

    async def _attempt(
        self, request: HTTPRequest, decoder: _Decoder[E], *, poll: bool = False
    ) -> E | _Attempt:
        """One HTTP exchange; a decoded envelope on success, else what went wrong.

        ``poll``: the attempt's deadline (of ``request_s``) is kept by the polls' shared
        timer, which cancels this task at it.
        """
        flow = self.flow
        if flow.cooldown.until > _NO_COOLDOWN:  # a 429 was answered: wait out what is left
            await flow.wait_cooldown()
        self.requests_sent += 1
        deadline = self._deadlines.start() if poll else None
        try:
            resp = await self._send(request, max_bytes=self.max_answer_bytes)
        except asyncio.CancelledError:
            if deadline is None or not deadline.timed_out():
                raise
            # The poll's deadline cancelled it: the same timeout as the transport's own.
            error: WaveSpeedError = TransportError(
                f"{request.method} {_loggable(request.url)}: no answer within "
                f"{self._deadlines.duration_s} s",
                method=request.method,
                url=_loggable(request.url),
                timed_out=True,
            )
            return _Attempt(FailureKind.TIMEOUT, error=error)
        except ConnectError as exc:
            return _Attempt(FailureKind.CONNECT, error=exc)
        except TransportError as exc:
            return _Attempt(FailureKind.TIMEOUT if exc.timed_out else FailureKind.RESET, error=exc)
        finally:
            if deadline is not None:
                deadline.finish()

        status = resp.status
        body = resp.body
        if body is None:
            too_big = (
                f"HTTP {status} answer larger than {self.max_answer_bytes} bytes "
                "(SizeLimits.max_answer_bytes); not read"
            )
            if not 200 <= status < 300:
                # An error status says enough without its body: a 429 keeps its
                # Retry-After (and its cool-down), a 5xx its retries, a 4xx its type.
                retry_after = _retry_after(resp)
                return self._status_failure(status, status, too_big, None, b"", retry_after, None)
            error = DecodeError(f"{request.method} {_loggable(request.url)}: {too_big}")
            return _Attempt(FailureKind.MALFORMED, status=status, error=error)
        if 200 <= status < 300:
            try:
                env = decoder.decode(body)
            except DECODE_FAILURES as exc:
                return _Attempt(
                    FailureKind.MALFORMED,
                    status=status,
                    error=DecodeError(
                        f"{request.method} {_loggable(request.url)}: the answer is not the "
                        f"expected JSON ({type(exc).__name__}: {printable(str(exc), limit=200)})",
                        body=_text(body),
                    ),
                )
            if env.code == 200:  # the usual answer: classify_status would say OK
                return env
            effective = _policy.classify_status(status, _envelope_code(env.code))
            if effective is None:
                return env
            retry_after = _retry_after(resp)
            task_id = getattr(env.data, "id", None)
            message = printable(env.message or f"code {env.code}", limit=300)
            return self._status_failure(
                status, effective, message, env.code, body, retry_after, task_id
            )
        message, code = _error_message(body, status)
        retry_after = _retry_after(resp)
        return self._status_failure(status, status, message, code, body, retry_after, None)

    @staticmethod
    def _status_failure(
        http_status: int,
        effective: int,
        message: str,
        code: int | str | None,
        body: bytes,
        retry_after: float | None,
        task_id: str | None,
    ) -> _Attempt:
        """An error answer, typed by ``effective``, keeping the HTTP status as ``.status``.

        ``effective`` is the HTTP status, or the envelope's code when a 2xx carries an error.
        """
        ecode = _envelope_code(code)
        cls = _policy.error_class_for(effective, ecode)
        err: APIStatusError
        if cls is RateLimitError:
            err = RateLimitError(
                message,
                status=http_status,
                code=ecode,
                body=_text(body),
                task_id=task_id,
                retry_after=retry_after,
            )
        else:
            err = cls(message, status=http_status, code=ecode, body=_text(body), task_id=task_id)
        # The policy decides on the effective status: a 200 carrying code 500 is a 5xx.
        return _Attempt(
            FailureKind.STATUS,
            status=effective,
            retry_after_s=retry_after,
            error=err,
            task_id=task_id,
        )

    async def call(
        self,
        method: str,
        path_or_url: str,
        decoder: _Decoder[E],
        *,
        json_body: bytes | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        deadline: float | None = None,
        task_id: str | None = None,
    ) -> E:
        """An idempotent call (GET, upload, delete): retried per the GET policy.

        Args:
            json_body: A JSON body (sent with ``Content-Type: application/json``).
            body, content_type: Any other body, with its type.
            deadline: event-loop time (``loop.time()``) after which no retry is started.
            task_id: Attached to any error raised, so the caller keeps the id.
        """
        request = self.request(
            method,
            path_or_url,
            body=json_body if json_body is not None else body,
            content_type=content_type,
            params=params,
            timeout_s=timeout_s,
        )
        out = await self._attempt(request, decoder)
        if isinstance(out, _Attempt):
            out = await self._retry(out, request, decoder, deadline, task_id)
        return out

    async def poll(self, wait: PollTarget) -> Prediction:
        """One poll of a wait in progress: a GET of the task's result, retried until its deadline.

        The GET is ``wait.target`` (from :meth:`poll_request`), retried as :meth:`call`
        retries a GET, until ``wait.deadline``.

        Each attempt's ``request_s`` deadline is kept by one timer for every poll in
        flight (which cancels the poll's task, and the attempt turns that into a
        timeout), not by a timer of the transport's. With a share, the account-wide poll
        budget is waited for first (the scheduler's own budget check gives way to it,
        see ``FlowControl.take_poll``).

        Raises:
            DecodeError: the answer has no task in it.
        """
        flow = self.flow
        if flow.share is not None:
            await flow.acquire_poll()
        request = wait.target
        out = await self._attempt(request, prediction_decoder, poll=True)
        task_id = wait.task_id
        if isinstance(out, _Attempt):
            out = await self._retry(
                out, request, prediction_decoder, wait.deadline, task_id, poll=True
            )
        pred = out.data
        if pred is None:
            raise DecodeError("the result has no task in it", task_id=task_id)
        self.polls_answered += 1
        return pred

    async def _retry(
        self,
        out: _Attempt,
        request: HTTPRequest,
        decoder: _Decoder[E],
        deadline: float | None,
        task_id: str | None,
        *,
        poll: bool = False,
    ) -> E:
        """A GET after its first attempt failed (``out``).

        Sends ``request`` again per the GET policy until one succeeds, or raises the last
        failure's error.
        """
        tries = 1
        while True:
            time_left = None if deadline is None else deadline - self.flow.now()
            what = "poll" if poll else request.method
            decision = self._decide(_policy.decide_get_retry, out, tries, time_left, task_id, what)
            if not decision.retry:
                raise self._final(out, task_id)
            self.retries += 1
            log.info(
                "retrying %s %s in %.2f s (attempt %d): %s",
                request.method,
                _loggable(request.url),
                decision.delay_s,
                tries,
                decision.reason,
                extra={"task_id": task_id} if task_id else None,
            )
            await anyio.sleep(decision.delay_s)
            tries += 1
            result = await self._attempt(request, decoder, poll=poll)
            if not isinstance(result, _Attempt):
                return result
            out = result

    async def submit(
        self,
        model: str,
        body: dict[str, Any],
        decoder: _Decoder[E],
        *,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        ref: int | None = None,
    ) -> E:
        """POST a task. Re-sent only when the policy proves no task was created.

        Within a bulk run, its job's hooks (:mod:`~wavespeed_async._runtime.attempts`) are
        told before each send, and after each answer that proves no task was created.
        ``ref``: the submit's number in the Client's events (``Events.begin_submit``): its
        first send is told as ``submitting``, its re-sends as ``retry``.

        Raises:
            SubmissionOutcomeUnknown: the answer was lost; a billed task may exist.
        """
        request = self.request(
            "POST",
            f"/api/v3/{model}",
            body=msgspec.json.encode(body),
            params=params,
            timeout_s=timeout_s,
        )
        attempt = 0
        hooks = submit_attempts.get()
        while True:
            attempt += 1
            if hooks is not None:
                await self._before_send(hooks)
            if attempt == 1 and ref is not None and self.events.active:
                self.events.submitting(ref)  # its re-sends are told as retries
            out = await self._attempt(request, decoder)
            if not isinstance(out, _Attempt):
                return out
            if out.task_id is not None:
                # The server answered with an error but named a task: it exists. Never
                # re-send; hand the id to the caller with the error.
                raise self._final(out, out.task_id)
            if hooks is not None and not _policy.submit_outcome_unknown(
                out.kind, status=out.status, retry_after_s=out.retry_after_s
            ):
                await hooks.not_sent()  # refused, or never sent: no task exists
            decision = self._decide(
                _policy.decide_submit_retry, out, attempt, None, None, "submit", ref
            )
            if decision.retry:
                self.retries += 1
                log.info(
                    "re-sending submit to %s in %.2f s (attempt %d): %s",
                    model,
                    decision.delay_s,
                    attempt,
                    decision.reason,
                )
                await anyio.sleep(decision.delay_s)
                continue
            if _policy.submit_outcome_unknown(
                out.kind, status=out.status, retry_after_s=out.retry_after_s
            ):
                cause = _CAUSE_KIND[out.kind]
                log.warning(
                    "submit to %s: outcome unknown (%s); not re-sent, a task may exist",
                    model,
                    cause,
                )
                raise SubmissionOutcomeUnknown(
                    f"submit to {model}: the answer was lost ({cause}: {out.error}); a task "
                    "may or may not have been created and billed, so it was not re-sent",
                    model=model,
                    input=body,
                    cause_kind=cause,
                    status=out.status,
                ) from out.error
            raise self._final(out, None)

    async def _before_send(self, hooks: SubmitAttempts) -> None:
        """Wait out a cool-down, then tell the hooks that the submit is being sent.

        A job is never recorded as sent while it still waits: a cool-down that began while
        the hooks ran takes the record back and waits again.
        """
        flow = self.flow
        while True:
            if flow.cooldown.until > _NO_COOLDOWN:
                await flow.wait_cooldown()
            await hooks.sending()
            if flow.cooldown.delay(flow.now()) <= 0:
                return
            await hooks.not_sent()

    @staticmethod
    def _final(out: _Attempt, task_id: str | None) -> WaveSpeedError:
        err = out.error or TransportError(f"request failed: {out.kind.name}")
        if task_id is not None and err.task_id is None:
            err.task_id = task_id
        return err


def result_path(task_id: str) -> str:
    """The path of a task's result (what a poll GETs)."""
    return f"/api/v3/predictions/{task_id}/result"


def _loggable(url: str) -> str:
    """A URL safe to log: without a query string (which may carry a webhook token)."""
    return url.split("?", 1)[0]
