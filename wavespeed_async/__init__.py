"""wavespeed_async: an asyncio-native client for the WaveSpeedAI API.

::

    from wavespeed_async import Client

    async with Client() as client:  # key from $WAVESPEED_API_KEY
        pred = await client.run("wavespeed-ai/flux-kontext-pro/text-to-image",
                                {"prompt": "a lighthouse at dusk"})
        print(pred.id, pred.outputs)

The built-in emulator of the API lives in :mod:`wavespeed_async.emulator`.
"""

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConnectError,
    DecodeError,
    LedgerError,
    NotFoundError,
    OutputRefusedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknown,
    SubmitSkipped,
    TaskFailedError,
    TaskTimeoutError,
    TransportError,
    ValidationError,
    WaveSpeedError,
    WebhookVerificationError,
)
from wavespeed_async._core.models import Prediction, Timings, Urls
from wavespeed_async._core.requests import (
    FluxKontextDev,
    FluxKontextProTextToImage,
    TypedRequest,
    UnknownFieldWarning,
    validate_input,
)
from wavespeed_async._core.settings import (
    TIERS,
    CatalogConfig,
    FlowLimits,
    InputCheckMode,
    PollConfig,
    RetryConfig,
    ScheduleTuning,
    SizeLimits,
    TierLimits,
    Timeouts,
)
from wavespeed_async._core.webhooks import sign_webhook, verify_webhook
from wavespeed_async._facade.bulk import BulkResult, BulkRun, Progress
from wavespeed_async._facade.client import DEFAULT_BASE_URL, Client, TaskCreatedHook
from wavespeed_async._http.base import HTTPRequest, HTTPResponse, HTTPTransport, RequestTimeout
from wavespeed_async._http.transport import AiohttpTransport
from wavespeed_async._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "TIERS",
    "APIStatusError",
    "AiohttpTransport",
    "AuthenticationError",
    "BadRequestError",
    "BulkResult",
    "BulkRun",
    "CatalogConfig",
    "Client",
    "ClientClosedError",
    "ConnectError",
    "DecodeError",
    "FlowLimits",
    "FluxKontextDev",
    "FluxKontextProTextToImage",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPTransport",
    "InputCheckMode",
    "LedgerError",
    "Model",
    "NotFoundError",
    "OutputRefusedError",
    "PermissionDeniedError",
    "PollConfig",
    "Prediction",
    "Progress",
    "RateLimitError",
    "RequestTimeout",
    "RetryConfig",
    "ScheduleTuning",
    "ServerError",
    "SizeLimits",
    "SubmissionOutcomeUnknown",
    "SubmitSkipped",
    "TaskCreatedHook",
    "TaskFailedError",
    "TaskTimeoutError",
    "TierLimits",
    "Timeouts",
    "Timings",
    "TransportError",
    "TypedRequest",
    "UnknownFieldWarning",
    "Urls",
    "ValidationError",
    "WaveSpeedError",
    "WebhookVerificationError",
    "__version__",
    "sign_webhook",
    "validate_input",
    "verify_webhook",
]
