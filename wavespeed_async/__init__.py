"""wavespeed_async: an asyncio-native client for the WaveSpeedAI API.

::

    from wavespeed_async import Client

    async with Client() as client:  # key from $WAVESPEED_API_KEY
        pred = await client.run("wavespeed-ai/flux-kontext-pro/text-to-image",
                                {"prompt": "a lighthouse at dusk"})
        print(pred.id, pred.outputs)

The built-in emulator of the API lives in :mod:`wavespeed_async.emulator`.
"""

from types import FunctionType as _FunctionType

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.errors import (
    APIStatusError,
    AsyncioRequiredError,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ClientClosedError,
    ConnectError,
    DecodeError,
    InsufficientBalanceError,
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
from wavespeed_async._core.events import (
    AbandonedEvent,
    CompletedEvent,
    CooldownEvent,
    CreatedEvent,
    DeliveredEvent,
    DroppedEvent,
    EndEvent,
    Event,
    FailedEvent,
    RetryEvent,
    StatusEvent,
    SubmittingEvent,
    TimeoutEvent,
    UnknownEvent,
    WaitingEvent,
)
from wavespeed_async._core.models import Prediction, Timings, Urls
from wavespeed_async._core.reconcile import LostSubmit, Reconciled
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
from wavespeed_async._core.spend import (
    BatchQuote,
    BillingRecord,
    Cost,
    HistoryEntry,
    ModelSpend,
    Quote,
)
from wavespeed_async._core.webhooks import sign_webhook, verify_webhook
from wavespeed_async._facade.bulk import (
    BulkFailed,
    BulkOk,
    BulkOutcome,
    BulkResult,
    BulkRun,
    Progress,
)
from wavespeed_async._facade.client import DEFAULT_BASE_URL, Client, TaskCreatedHook
from wavespeed_async._facade.observing import EventListener
from wavespeed_async._facade.spend import SpendStatus
from wavespeed_async._http.base import HTTPRequest, HTTPResponse, HTTPTransport, RequestTimeout
from wavespeed_async._http.transport import AiohttpTransport
from wavespeed_async._runtime.event_stream import EventStream
from wavespeed_async._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "TIERS",
    "APIStatusError",
    "AbandonedEvent",
    "AiohttpTransport",
    "AsyncioRequiredError",
    "AuthenticationError",
    "BadRequestError",
    "BatchQuote",
    "BillingRecord",
    "BudgetExceeded",
    "BulkFailed",
    "BulkOk",
    "BulkOutcome",
    "BulkResult",
    "BulkRun",
    "CatalogConfig",
    "Client",
    "ClientClosedError",
    "CompletedEvent",
    "ConnectError",
    "CooldownEvent",
    "Cost",
    "CreatedEvent",
    "DecodeError",
    "DeliveredEvent",
    "DroppedEvent",
    "EndEvent",
    "Event",
    "EventListener",
    "EventStream",
    "FailedEvent",
    "FlowLimits",
    "FluxKontextDev",
    "FluxKontextProTextToImage",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPTransport",
    "HistoryEntry",
    "InputCheckMode",
    "InsufficientBalanceError",
    "LedgerError",
    "LostSubmit",
    "Model",
    "ModelSpend",
    "NotFoundError",
    "OutputRefusedError",
    "PermissionDeniedError",
    "PollConfig",
    "Prediction",
    "Progress",
    "Quote",
    "RateLimitError",
    "Reconciled",
    "RequestTimeout",
    "RetryConfig",
    "RetryEvent",
    "ScheduleTuning",
    "ServerError",
    "SizeLimits",
    "SpendStatus",
    "StatusEvent",
    "SubmissionOutcomeUnknown",
    "SubmitSkipped",
    "SubmittingEvent",
    "TaskCreatedHook",
    "TaskFailedError",
    "TaskTimeoutError",
    "TierLimits",
    "TimeoutEvent",
    "Timeouts",
    "Timings",
    "TransportError",
    "TypedRequest",
    "UnknownEvent",
    "UnknownFieldWarning",
    "Urls",
    "ValidationError",
    "WaitingEvent",
    "WaveSpeedError",
    "WebhookVerificationError",
    "__version__",
    "sign_webhook",
    "validate_input",
    "verify_webhook",
]


def _name_public_paths() -> None:
    """Make tracebacks and reprs name a class's public path, not the private module it is in.

    Such as ``wavespeed_async.TaskFailedError``; pickling finds the classes there too.

    Errors, warnings, the Client, BulkRun and the functions only: a Struct's or a
    dataclass's annotations are resolved in its module's namespace (msgspec, typing), so
    those keep theirs.
    """
    for name in __all__:
        obj = globals()[name]
        if (
            isinstance(obj, _FunctionType)
            or obj in (Client, BulkRun)
            or (isinstance(obj, type) and issubclass(obj, BaseException))
        ):
            obj.__module__ = __name__


_name_public_paths()
