"""Typed wire models, decoded straight from response bytes by decoders built once.

Strict only where a wrong value would mislead: a task's ``id`` (it becomes a URL path and
a file name: see :mod:`wavespeed_async._core.ids`), its ``status`` being a string, and its
``outputs`` being a list. Everything else is lenient: unknown fields are ignored, and a
``null`` where a value was expected (``error``, ``timings``, ``has_nsfw_contents`` or one
of its flags, ``urls``, ``model``) reads as "not given". An unknown ``status`` is kept as a
plain string and treated as not finished, so polling goes on (it is logged once per
distinct value): new server fields or statuses never break a client in production.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec

from wavespeed_async._core.ids import TaskId
from wavespeed_async._core.text import printable

log = logging.getLogger("wavespeed_async")

__all__ = [
    "FAILURE_STATUSES",
    "TERMINAL_STATUSES",
    "Balance",
    "Prediction",
    "Timings",
    "UploadedMedia",
    "Urls",
]

#: Statuses after which a task never changes again.
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})
#: Terminal statuses that mean the task produced nothing usable.
FAILURE_STATUSES: Final = TERMINAL_STATUSES - {"completed"}
#: Every status the API documents; any other is treated as not finished.
KNOWN_STATUSES: Final = TERMINAL_STATUSES | {"created", "processing"}
#: Unknown statuses already logged (bounded: a hostile server cannot grow it).
_unknown_seen: set[str] = set()
_MAX_UNKNOWN_LOGGED: Final = 32
#: Every exception a decoder may raise on bytes that are not the expected JSON: invalid
#: UTF-8 inside a string raises UnicodeDecodeError, very deep nesting RecursionError.
DECODE_FAILURES: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _note_unknown_status(status: str, task_id: str) -> None:
    if status not in _unknown_seen and len(_unknown_seen) < _MAX_UNKNOWN_LOGGED:
        _unknown_seen.add(status)
        log.warning(
            "unknown task status %r: treated as not finished (polling goes on)",
            printable(status, limit=80),
            extra={"task_id": task_id},
        )


class Timings(msgspec.Struct, frozen=True):
    """Server-side timings of a task."""

    #: Inference time in milliseconds (``None`` until the task ran).
    inference: float | None = None


class Urls(msgspec.Struct, frozen=True):
    """Related API endpoints of a task."""

    #: The URL that returns this task's result; preferred for polling when present.
    get: str | None = None


class Prediction(msgspec.Struct, frozen=True):
    """A task as the server describes it: its status and, once completed, its outputs.

    ``outputs`` holds URLs, or raw base64 strings (no ``data:`` prefix) when the request set
    ``enable_base64_output``; some non-image models return objects. ``has_nsfw_contents``
    has one flag per output (``None`` where the server gave none) and may be ``None``.
    ``id`` always matches :data:`~wavespeed_async._core.ids.TASK_ID_PATTERN`; ``error`` reads
    ``""`` when the server sent ``null``.
    """

    id: TaskId
    status: str = "created"
    model: str = ""
    outputs: list[Any] = msgspec.field(default_factory=list)
    urls: Urls | None = None
    has_nsfw_contents: list[bool | None] | None = None
    created_at: str | None = None
    error: str | None = ""
    timings: Timings | None = None
    #: Task-level error code of a failed task (1xxx: change the request; 5xxx: transient).
    code: int | None = None
    #: The task's inputs as the server echoes them, when it does (a dict), else ``None``.
    input: Any = None

    def __post_init__(self) -> None:
        if self.error is None:
            msgspec.structs.force_setattr(self, "error", "")
        if self.status not in KNOWN_STATUSES:
            _note_unknown_status(self.status, self.id)

    @property
    def done(self) -> bool:
        """Whether the task reached a terminal status (completed or a failure)."""
        return self.status in TERMINAL_STATUSES

    @property
    def ok(self) -> bool:
        """Whether the task completed successfully."""
        return self.status == "completed"

    @property
    def inference_ms(self) -> float | None:
        """The server's inference time in milliseconds, if reported."""
        return self.timings.inference if self.timings is not None else None


class Balance(msgspec.Struct, frozen=True):
    """``GET /api/v3/balance`` data."""

    balance: float


class UploadedMedia(msgspec.Struct, frozen=True):
    """``POST /api/v3/media/upload/binary`` data."""

    download_url: str
    type: str = ""
    filename: str = ""
    size: int = 0


class WebhookSecret(msgspec.Struct, frozen=True):
    """``GET /api/v3/webhook/secret`` data."""

    secret: str


class PredictionEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: Prediction | None = None


class BalanceEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: Balance | None = None


class UploadEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: UploadedMedia | None = None


class WebhookSecretEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: WebhookSecret | None = None


class AnyEnvelope(msgspec.Struct, frozen=True):
    """An envelope whose ``data`` we do not need typed (e.g. a delete's answer)."""

    code: int | str | None = None
    message: str | None = None
    data: Any = None


class ErrorBody(msgspec.Struct, frozen=True):
    """The shapes error answers come in: ``{code, message}``, ``error_code``, ``{error}``."""

    code: int | str | None = None
    message: str | None = None
    error_code: int | str | None = None
    error: str | dict[str, Any] | None = None
    data: Any = None


# Decoders are built once: building one per response is a measurable cost at scale.
prediction_decoder: Final = msgspec.json.Decoder(PredictionEnvelope)
bare_prediction_decoder: Final = msgspec.json.Decoder(Prediction)  # webhook bodies
balance_decoder: Final = msgspec.json.Decoder(BalanceEnvelope)
upload_decoder: Final = msgspec.json.Decoder(UploadEnvelope)
webhook_secret_decoder: Final = msgspec.json.Decoder(WebhookSecretEnvelope)
any_decoder: Final = msgspec.json.Decoder(AnyEnvelope)
error_decoder: Final = msgspec.json.Decoder(ErrorBody)


class UploadInstruction(msgspec.Struct, frozen=True):
    """Where and how to send the bytes: ``{method, url, headers}``."""

    url: str
    method: str = "PUT"
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class UploadTicket(msgspec.Struct, frozen=True):
    """``POST /api/v3/media/uploads`` data."""

    download_url: str
    upload: UploadInstruction


class TicketEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: UploadTicket | None = None


ticket_decoder: Final = msgspec.json.Decoder(TicketEnvelope)
