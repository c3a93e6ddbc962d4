"""The sans-IO policy core: every retry, backoff, submit-safety and terminal decision.

Everything here is a pure function over plain data: no clock, no sleeping, no network. The
I/O client asks these functions what to do and carries it out; the tests check them with
tables and Hypothesis. Poll scheduling lives beside it in :mod:`wavespeed_async._core.schedule`.

Retries are safe by construction: a GET is retried on any transient failure, but a submit
(POST) is re-sent only when it provably created no task, because the API has no
idempotency key and every accepted POST is a billed task.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
from dataclasses import dataclass
from datetime import timezone
from typing import Final

from wavespeed_async._core.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from wavespeed_async._core.models import FAILURE_STATUSES, TERMINAL_STATUSES
from wavespeed_async._core.settings import RetryConfig

__all__ = [
    "FailureKind",
    "RetryDecision",
    "backoff_delay",
    "classify_status",
    "decide_get_retry",
    "decide_submit_retry",
    "error_class_for",
    "is_failure",
    "is_terminal",
    "parse_retry_after",
    "submit_never_created",
    "submit_outcome_unknown",
    "unknown_outcome_cause",
]


# --------------------------------------------------------------------------- failures


class FailureKind(enum.Enum):
    """What happened to one HTTP attempt that did not give a usable answer."""

    #: Could not connect (refused, DNS, TLS handshake): the request never reached the server.
    CONNECT = "connect"
    #: The connection dropped after the request was (possibly) sent.
    RESET = "reset"
    #: A read timeout after sending.
    TIMEOUT = "timeout"
    #: An HTTP or envelope error status came back (see the ``status`` argument).
    STATUS = "status"
    #: A 2xx answer whose body does not decode.
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to try a request again, and after how long.

    Attributes:
        retry: ``True`` to send the request again after ``delay_s``.
        delay_s: Seconds to wait before the next attempt (0 when not retrying).
        reason: Why, in a few words, for logs.
    """

    retry: bool
    delay_s: float
    reason: str


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Parse a ``Retry-After`` header into seconds to wait.

    Args:
        value: The header's text: delay-seconds (``"5"``, ``"1.5"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); ``None`` when absent.
        now: The current unix time in seconds, to turn a date into a delay.

    Returns:
        Seconds to wait (a date in the past, or a negative number, gives 0.0), or
        ``None`` when the header is absent or not understood.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone info (RFC 5322)
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, config: RetryConfig, rng: random.Random) -> float:
    """The delay before retry number ``attempt``: exponential backoff with full jitter.

    Args:
        attempt: The attempt that just failed, from 1.
        config: Supplies ``backoff_base_s`` and ``max_backoff_s``.
        rng: The source of jitter (seed it in tests).

    Returns:
        Seconds, uniform in ``[0, min(max_backoff_s, backoff_base_s * 2**(attempt-1))]``.

    Raises:
        ValueError: ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Beyond 2**62 the cap is max_backoff_s anyway; avoid building huge floats.
    growth = 2.0 ** min(attempt - 1, 62)
    cap = min(config.max_backoff_s, config.backoff_base_s * growth)
    return rng.uniform(0.0, cap)


def _retryable_status(status: int | None) -> bool:
    return status is not None and (status in (408, 429) or status >= 500)


def _delay(
    retry_after_s: float | None, attempt: int, config: RetryConfig, rng: random.Random
) -> tuple[float, str]:
    if retry_after_s is not None and math.isfinite(retry_after_s):
        return min(max(0.0, retry_after_s), config.max_retry_after_s), "Retry-After"
    return backoff_delay(attempt, config, rng), "backoff"


def _decide(
    what: str,
    *,
    attempt: int,
    max_attempts: int,
    retry_after_s: float | None,
    config: RetryConfig,
    rng: random.Random,
    time_left_s: float | None,
) -> RetryDecision:
    if attempt >= max_attempts:
        return RetryDecision(False, 0.0, f"{what}; attempts exhausted ({attempt}/{max_attempts})")
    delay, source = _delay(retry_after_s, attempt, config, rng)
    if time_left_s is not None and delay > time_left_s:
        return RetryDecision(
            False, 0.0, f"{what}; a {delay:.2f}s {source} wait would pass the deadline"
        )
    return RetryDecision(True, delay, f"{what}; retry {attempt + 1}/{max_attempts} ({source})")


def _describe(kind: FailureKind, status: int | None) -> str:
    return f"HTTP {status}" if kind is FailureKind.STATUS else kind.value


def decide_get_retry(
    kind: FailureKind,
    *,
    status: int | None,
    retry_after_s: float | None,
    attempt: int,
    config: RetryConfig,
    rng: random.Random,
    time_left_s: float | None,
) -> RetryDecision:
    """Decide whether an idempotent GET that failed should be sent again.

    Retries connect failures, resets, timeouts, undecodable 2xx bodies, 408, 429 and 5xx;
    never another 4xx (the request itself is wrong).

    Args:
        kind: What went wrong.
        status: The effective error status when ``kind`` is STATUS, else ``None``.
        retry_after_s: The server's ``Retry-After`` in seconds, if it sent one; used
            instead of backoff, clamped to ``config.max_retry_after_s``.
        attempt: The attempt that just failed, from 1.
        config: Attempt limits and backoff.
        rng: The source of jitter.
        time_left_s: Seconds until the caller's deadline, or ``None`` for none. No retry
            is planned whose wait would pass it.

    Returns:
        The decision; ``delay_s`` is 0 when not retrying.
    """
    what = _describe(kind, status)
    if kind is FailureKind.STATUS and not _retryable_status(status):
        return RetryDecision(False, 0.0, f"{what} is not transient")
    return _decide(
        what,
        attempt=attempt,
        max_attempts=config.max_attempts,
        retry_after_s=retry_after_s,
        config=config,
        rng=rng,
        time_left_s=time_left_s,
    )


def submit_never_created(
    kind: FailureKind, *, status: int | None, retry_after_s: float | None
) -> bool:
    """Whether a failed submit provably created no task, so re-sending it cannot bill twice.

    True for a connect failure (the request never left), a 429, and a 503 that carries a
    ``Retry-After`` (the server refused up front).
    """
    if kind is FailureKind.CONNECT:
        return True
    if kind is FailureKind.STATUS:
        return status == 429 or (status == 503 and retry_after_s is not None)
    return False


def decide_submit_retry(
    kind: FailureKind,
    *,
    status: int | None,
    retry_after_s: float | None,
    attempt: int,
    config: RetryConfig,
    rng: random.Random,
    time_left_s: float | None,
) -> RetryDecision:
    """Decide whether a failed submit (POST) may be sent again.

    A submit is re-sent only when it provably never created a task: a connect failure,
    a 429, or a 503 with a ``Retry-After``. Anything else (a reset, a read timeout, a
    5xx, an unreadable 200) may have created a billed task and is never re-sent; see
    :func:`submit_outcome_unknown`. Arguments are as for :func:`decide_get_retry`, with
    ``config.max_submit_attempts`` as the limit.
    """
    what = _describe(kind, status)
    if not submit_never_created(kind, status=status, retry_after_s=retry_after_s):
        return RetryDecision(False, 0.0, f"{what}: a task may exist; a submit is never re-sent")
    return _decide(
        what,
        attempt=attempt,
        max_attempts=config.max_submit_attempts,
        retry_after_s=retry_after_s,
        config=config,
        rng=rng,
        time_left_s=time_left_s,
    )


def submit_outcome_unknown(
    kind: FailureKind, *, status: int | None, retry_after_s: float | None = None
) -> bool:
    """Whether a failed submit means a billed task MAY exist (raise SubmissionOutcomeUnknown).

    Args:
        kind: What went wrong.
        status: The effective error status when ``kind`` is STATUS.
        retry_after_s: The parsed ``Retry-After``, or ``None`` when the answer had none;
            a 503 with one is a refusal (no task), a 503 without one is not.

    Returns:
        True for a reset, a read timeout, an undecodable 2xx body, or a 5xx (other than
        503 with ``Retry-After``) or any other non-4xx error status; False for a connect
        failure and every 4xx, 429 included (the server refused: no task).
    """
    if kind is FailureKind.CONNECT:
        return False
    if kind is FailureKind.STATUS:
        if status is not None and 400 <= status < 500:
            return False
        return not (status == 503 and retry_after_s is not None)
    return True


def unknown_outcome_cause(kind: FailureKind, *, status: int | None) -> str:
    """The ``cause_kind`` of a SubmissionOutcomeUnknown: reset, timeout, server_error, malformed."""
    if kind is FailureKind.STATUS:
        return "server_error"
    return str(kind.value)


# --------------------------------------------------------------------------- statuses


def is_terminal(status: str) -> bool:
    """Whether a task status is final (completed, failed, cancelled, timeout, deleted).

    Unknown statuses are not terminal: polling continues (until the caller's deadline).
    """
    return status in TERMINAL_STATUSES


def is_failure(status: str) -> bool:
    """Whether a task status is final and not ``completed``."""
    return status in FAILURE_STATUSES


def classify_status(http_status: int, envelope_code: int | None) -> int | None:
    """The effective error status of an answer, from both the HTTP status and the envelope.

    Args:
        http_status: The HTTP status code.
        envelope_code: The envelope's ``code``, or ``None`` when absent (or not a number).

    Returns:
        ``None`` when the answer is OK (a 2xx whose envelope code is absent, 0 or 2xx);
        else the HTTP status when it is not 2xx; else the envelope code (a 200 carrying
        ``code: 500`` gives 500).
    """
    if not 200 <= http_status < 300:
        return http_status
    if envelope_code is None or envelope_code == 0 or 200 <= envelope_code < 300:
        return None
    return envelope_code


#: The code of a refusal for want of money: HTTP 402, or 403 with this envelope code.
INSUFFICIENT_BALANCE: Final = 402

_ERROR_CLASSES: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    413: BadRequestError,
    422: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_class_for(status: int, code: int | None = None) -> type[APIStatusError]:
    """The exception class for an effective error status (see :func:`classify_status`).

    ``code``, the envelope's, tells an empty balance (402) from other refusals.
    """
    if status == INSUFFICIENT_BALANCE or (status == 403 and code == INSUFFICIENT_BALANCE):
        return InsufficientBalanceError
    if status >= 500:
        return ServerError
    return _ERROR_CLASSES.get(status, APIStatusError)
