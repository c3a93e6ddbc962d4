"""Typed wire models, decoded straight from response bytes by decoders built once.

Unknown fields are ignored and an unknown ``status`` is kept as a plain string (and treated
as not finished), so that new server fields or statuses never break a client in production.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

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
    has one flag per output and may be ``None``.
    """

    id: str
    status: str = "created"
    model: str = ""
    outputs: list[Any] = msgspec.field(default_factory=list)
    urls: Urls | None = None
    has_nsfw_contents: list[bool] | None = None
    created_at: str | None = None
    error: str = ""
    timings: Timings | None = None
    #: Task-level error code of a failed task (1xxx: change the request; 5xxx: transient).
    code: int | None = None

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
json_encoder: Final = msgspec.json.Encoder()
