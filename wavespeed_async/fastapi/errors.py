"""HTTP answers for wavespeed-async errors raised in FastAPI handlers, installed in one line.

::

    from wavespeed_async.fastapi import install_error_handlers

    install_error_handlers(app)

Without it, a handler that lets a ``TaskFailedError`` or a ``NotFoundError`` escape answers
a bare 500. With it, each error answers the status a caller can act on, with a JSON body
``{"detail": ..., "error": ..., "task_id": ...}`` (``task_id`` whenever a task exists, so
the caller can come back for it):

=========================================================  ======  ==================
error                                                      status  ``error``
=========================================================  ======  ==================
``TaskFailedError``, code 1xxx (moderation, bad input)     422     ``task_failed``
``TaskFailedError``, any other code or none                502     ``task_failed``
``NotFoundError`` (an unknown task id or model)            404     ``not_found``
``ValidationError``, ``BadRequestError``                   422     ``invalid_input``
``RateLimitError`` (after the client's own retries)        429     ``rate_limited``
``TaskTimeoutError`` (the task still runs)                 504     ``timeout``
``SubmissionOutcomeUnknown`` (a task may exist)            502     ``outcome_unknown``
``AuthenticationError``, ``PermissionDeniedError``          503     ``unavailable``
``ClientClosedError``, ``AsyncioRequiredError``             503     ``unavailable``
any other ``WaveSpeedError`` (network, server, decoding)   502     ``upstream_error``
=========================================================  ======  ==================

A 429 carries ``Retry-After`` (the server's hint, rounded up; else
:data:`DEFAULT_RETRY_AFTER_S`). A refused key or account is this app's configuration, not
the caller's doing: the answer says only that the service is unavailable, and the error is
logged at ERROR on the ``wavespeed_async.fastapi`` logger. Every 5xx answer is logged at
WARNING there, with its task id.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from wavespeed_async._core.errors import (
    AsyncioRequiredError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    TaskTimeoutError,
    ValidationError,
    WaveSpeedError,
)

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "error_response",
    "install_error_handlers",
    "wavespeed_error_handler",
]

log = logging.getLogger("wavespeed_async.fastapi")

#: ``Retry-After`` of a 429 when the API gave no hint, seconds.
DEFAULT_RETRY_AFTER_S: Final = 5

_UNAVAILABLE: Final = "the image generation service is unavailable; try again later"


def _task_failed(exc: TaskFailedError) -> tuple[int, dict[str, Any]]:
    # 1xxx: the request must change (content moderation, a bad parameter, an unreachable
    # input image); anything else failed on the service's side.
    status = 422 if exc.code is not None and 1000 <= exc.code < 2000 else 502
    return status, {"status": exc.status, "code": exc.code}


def _classify(exc: WaveSpeedError) -> tuple[int, str, dict[str, Any]]:
    """The status, the ``error`` word and any extra fields for ``exc``."""
    if isinstance(exc, TaskFailedError):
        status, extra = _task_failed(exc)
        return status, "task_failed", extra
    if isinstance(exc, NotFoundError):
        return 404, "not_found", {}
    if isinstance(exc, ValidationError):
        return 422, "invalid_input", {"field": exc.field}
    if isinstance(exc, BadRequestError):
        return 422, "invalid_input", {}
    if isinstance(exc, RateLimitError):
        return 429, "rate_limited", {}
    if isinstance(exc, TaskTimeoutError):
        return 504, "timeout", {}
    if isinstance(exc, SubmissionOutcomeUnknown):
        return 502, "outcome_unknown", {}
    if isinstance(
        exc, (AuthenticationError, PermissionDeniedError, ClientClosedError, AsyncioRequiredError)
    ):
        return 503, "unavailable", {}
    return 502, "upstream_error", {}


def _retry_after(exc: RateLimitError) -> int:
    hint = exc.retry_after
    if hint is None or not math.isfinite(hint) or hint <= 0:
        return DEFAULT_RETRY_AFTER_S
    return max(1, math.ceil(hint))


def error_response(exc: WaveSpeedError) -> JSONResponse:
    """The answer for ``exc`` (see the table above), for an exception handler of your own."""
    status, word, extra = _classify(exc)
    detail = _UNAVAILABLE if word == "unavailable" else str(exc)
    body: dict[str, Any] = {"detail": detail, "error": word, "task_id": exc.task_id, **extra}
    headers = {"Retry-After": str(_retry_after(exc))} if isinstance(exc, RateLimitError) else None
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        log.error("the API refused this app's key or account: %s", exc)
    elif status >= 500:
        log.warning(
            "answered %d for %s: %s", status, type(exc).__name__, exc,
            extra={"task_id": exc.task_id},
        )  # fmt: skip
    return JSONResponse(body, status_code=status, headers=headers)


async def wavespeed_error_handler(request: Request, exc: Exception) -> Response:
    """A FastAPI exception handler for :class:`~wavespeed_async.WaveSpeedError`.

    Use: ``app.add_exception_handler(WaveSpeedError, wavespeed_error_handler)``.
    """
    if not isinstance(exc, WaveSpeedError):  # registered for another class: not ours
        raise exc
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer each :class:`~wavespeed_async.WaveSpeedError` from ``app`` with its status.

    Every such error a handler of ``app`` raises gets its status and a JSON body (see the
    module's table) instead of a bare 500.

    Handlers for more specific classes that you add yourself still win.
    """
    app.add_exception_handler(WaveSpeedError, wavespeed_error_handler)
