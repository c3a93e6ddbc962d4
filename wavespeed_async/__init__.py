"""wavespeed_async: an asyncio-native client for the WaveSpeedAI API."""

from wavespeed_async._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConnectError,
    DecodeError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    ValidationError,
    WaveSpeedError,
    WebhookVerificationError,
)
from wavespeed_async._models import Prediction, Timings, Urls

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConnectError",
    "DecodeError",
    "NotFoundError",
    "PermissionDeniedError",
    "Prediction",
    "RateLimitError",
    "ServerError",
    "SubmissionOutcomeUnknown",
    "TaskFailedError",
    "TaskTimeoutError",
    "Timings",
    "TransportError",
    "Urls",
    "ValidationError",
    "WaveSpeedError",
    "WebhookVerificationError",
    "__version__",
]
