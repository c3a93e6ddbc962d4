"""The public exception tree.

Every error the public API raises derives from :class:`WaveSpeedError`; no aiohttp or
msgspec exception escapes. Catch the class that matches what you can act on::

    WaveSpeedError
    ├── ValidationError            bad input, found before any request was sent (also ValueError)
    ├── ClientClosedError          the Client was closed, or is used from another event loop
    ├── AsyncioRequiredError       no asyncio event loop runs here (trio, or no loop at all)
    ├── TransportError             no usable answer: connect failure, reset, read timeout
    │   └── ConnectError           the request provably never reached the server
    ├── SubmissionOutcomeUnknown   a submit whose answer was lost: a task MAY exist (and be billed)
    ├── SubmitSkipped              a batch's job that ``on_submitting`` declined: nothing was sent
    ├── BudgetExceeded             a job held back by a spending budget: never sent (.quote)
    ├── APIStatusError             the server answered "no" (.status, .code, .message)
    │   ├── BadRequestError        400 / 413 / envelope code 4xx: change the request
    │   ├── AuthenticationError    401: the API key is missing or wrong
    │   ├── PermissionDeniedError  403: the account cannot do this (balance, plan)
    │   │   └── InsufficientBalanceError  the balance is below the task's price (code 402)
    │   ├── NotFoundError          404: unknown task id or model
    │   ├── RateLimitError         429 (.retry_after in seconds, when the server said)
    │   └── ServerError            5xx, or an envelope code 5xx inside a 200
    ├── DecodeError                an answer that is not the JSON we expect (or too large)
    ├── OutputRefusedError         an output not fetched or saved: internal address, too large
    ├── TaskFailedError            the task ended failed/cancelled/timeout/deleted
    │                              (.task_id, .status, .code, .error, .prediction)
    ├── TaskTimeoutError           the caller's deadline passed (also TimeoutError; .task_id)
    ├── LedgerError                the Ray pipeline's ledger cannot be read or written (.location)
    └── WebhookVerificationError   a webhook whose signature, id or timestamp does not check out

Errors that concern a task carry its id as ``.task_id`` (``None`` when no task exists), so
that a task the server created is never lost, whatever happens to the caller.

No error message, ``repr`` or attribute ever contains the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wavespeed_async._core.text import printable

if TYPE_CHECKING:
    from decimal import Decimal

    from wavespeed_async._core.models import Prediction
    from wavespeed_async._core.spend import Quote

__all__ = [
    "APIStatusError",
    "AsyncioRequiredError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "ClientClosedError",
    "ConnectError",
    "DecodeError",
    "InsufficientBalanceError",
    "LedgerError",
    "NotFoundError",
    "OutputRefusedError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "SubmissionOutcomeUnknown",
    "SubmitSkipped",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "ValidationError",
    "WaveSpeedError",
    "WebhookVerificationError",
]


class WaveSpeedError(Exception):
    """Base class of every error raised by wavespeed_async.

    Attributes:
        task_id: The task this error concerns, when one is known (else ``None``).
    """

    task_id: str | None

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id

    def __str__(self) -> str:
        if self.task_id and self.task_id not in self.message:
            return f"{self.message} (task {self.task_id})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ValidationError(WaveSpeedError, ValueError):
    """An input was rejected locally, before any request was sent.

    Attributes:
        field: The offending field's name.
        allowed: A human-readable description of what is allowed (e.g. ``"1 ~ 50"``).
    """

    def __init__(self, field: str, message: str, *, allowed: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.allowed = allowed


class ClientClosedError(WaveSpeedError, RuntimeError):
    """The Client was used after ``aclose()``, outside ``async with``, or from another loop."""


class AsyncioRequiredError(WaveSpeedError, RuntimeError):
    """The Client was used where no asyncio event loop runs.

    That is under trio (anyio's trio backend included), or from synchronous code.

    wavespeed-async is built on aiohttp, which runs on asyncio only. Under anyio, run your
    code with ``anyio.run(main)`` (asyncio is its default backend), and pin the asyncio
    backend in tests.
    """


class TransportError(WaveSpeedError):
    """No usable answer came back: connection refused or reset, read timeout, TLS failure.

    Attributes:
        method: The HTTP method (``"GET"``, ``"POST"``).
        url: The URL without any credentials.
        timed_out: The answer did not come in time (else the connection was lost).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        task_id: str | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.method = method
        self.url = url
        self.timed_out = timed_out


class ConnectError(TransportError):
    """The connection could not be opened: the request provably never reached the server."""


class SubmissionOutcomeUnknown(WaveSpeedError):
    """A submit was sent but its answer was lost: a billed task may or may not exist.

    Raised instead of re-sending, because the API has no idempotency key and a second POST
    would be a second billed task. Decide yourself whether to submit again.

    Attributes:
        model: The model path that was submitted.
        input: The request body that was sent (no credentials are in it).
        cause_kind: What went wrong: ``"reset"``, ``"timeout"``, ``"server_error"``,
            ``"malformed"``.
        status: The HTTP status when one was received, else ``None``.
        sent_at, lost_at: Unix seconds: when the submit was sent, and when its answer was
            given up (``None`` if not known); ``client.reconcile`` searches the history
            between them.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        input: dict[str, Any],
        cause_kind: str,
        status: int | None = None,
        sent_at: float | None = None,
        lost_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.input = input
        self.cause_kind = cause_kind
        self.status = status
        self.sent_at = sent_at
        self.lost_at = lost_at


class SubmitSkipped(WaveSpeedError):
    """A batch job not sent because ``run_many(on_submitting=...)`` returned ``False`` for it.

    Nothing was sent, no task exists. Reported as that job's result.
    """


class BudgetExceeded(WaveSpeedError):
    """A job held back because its quote would take committed spend over a budget.

    The budget is ``FlowLimits.budget_usd`` or ``run_many(budget_usd=...)``. The job was never
    sent, nothing was charged. In a batch it is that job's result; the batch goes on.

    Attributes:
        quote: The job's :class:`~wavespeed_async.Quote`.
        budget_usd: The budget that held it back (``Decimal``).
        committed_usd: What was committed against that budget when it was checked.
        scope: ``"batch"`` (``run_many``), ``"client"`` or ``"account"`` (with a share).
    """

    def __init__(
        self,
        message: str,
        *,
        quote: Quote,
        budget_usd: Decimal,
        committed_usd: Decimal,
        scope: str,
    ) -> None:
        super().__init__(message)
        self.quote = quote
        self.budget_usd = budget_usd
        self.committed_usd = committed_usd
        self.scope = scope


class APIStatusError(WaveSpeedError):
    """The server answered, and the answer was an error.

    Attributes:
        status: The HTTP status code.
        code: The envelope's ``code`` (may differ from ``status``: a 200 can carry 500).
        body: Up to 2,000 characters of the raw answer, for diagnostics.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        body: str = "",
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id)
        self.status = status
        self.code = code if code is not None else status
        self.body = body[:2000]

    def __str__(self) -> str:
        base = super().__str__()
        return f"HTTP {self.status} (code {self.code}): {base}"


class BadRequestError(APIStatusError):
    """400 or 413: the request itself must change (a field, a size)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or not accepted."""


class PermissionDeniedError(APIStatusError):
    """403: the account may not do this (for example, an empty balance)."""


class InsufficientBalanceError(PermissionDeniedError):
    """The account's balance is below the task's price (HTTP 402, or 403 with code 402).

    The code is the envelope's. The submit was refused before anything was created or
    charged. Top up the account.
    """


class NotFoundError(APIStatusError):
    """404: the task id or model path is unknown to the server."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        code: int | None = None,
        body: str = "",
        task_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, body=body, task_id=task_id)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx, or a 200 whose envelope carries a 5xx code: transient on the server's side."""


class DecodeError(WaveSpeedError):
    """The server's answer could not be decoded into the expected shape.

    Attributes:
        body: Up to 2,000 characters of the raw answer.
    """

    def __init__(self, message: str, *, body: str = "", task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.body = body[:2000]


class OutputRefusedError(WaveSpeedError):
    """An output was not fetched or saved, or a file not uploaded, on purpose.

    Its URL (an output's, or the storage URL of an upload ticket) points at an internal
    address (loopback, private, link-local such as a cloud metadata service), the output is
    larger than ``SizeLimits.max_download_bytes``, or the task has more outputs than
    ``SizeLimits.max_outputs``. Not retried; no file is left behind.

    Attributes:
        url: The URL without its query string.
    """

    def __init__(self, message: str, *, url: str = "", task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.url = url


class TaskFailedError(WaveSpeedError):
    """The task reached a terminal status other than ``completed``.

    Attributes:
        task_id: The task's id (always set).
        status: ``failed``, ``cancelled``, ``timeout`` or ``deleted``.
        code: The task-level error code when the server gave one (1xxx: change the request;
            5xxx: transient on the server).
        error: The server's error text ("" when none).
        prediction: The final Prediction as the server returned it.
    """

    def __init__(self, prediction: Prediction) -> None:
        detail = printable(prediction.error or "no error message")
        code = f" code {prediction.code}" if prediction.code is not None else ""
        super().__init__(
            f"task {prediction.id} ended {printable(prediction.status, limit=40)}{code}: {detail}",
            task_id=prediction.id,
        )
        self.status = prediction.status
        self.code = prediction.code
        self.error = prediction.error
        self.prediction = prediction

    @property
    def retryable(self) -> bool:
        """Whether submitting the same input again may succeed (a 5xxx server-side code)."""
        return self.code is not None and 5000 <= self.code < 6000


class TaskTimeoutError(WaveSpeedError, TimeoutError):
    """The caller's deadline passed before the task ended. The task still runs on the server.

    Attributes:
        task_id: The task's id (poll it later with ``client.wait(task_id)``).
        last: The last Prediction seen, if any.
    """

    def __init__(self, message: str, *, task_id: str, last: Prediction | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.last = last


class LedgerError(WaveSpeedError):
    """The ledger of a Ray pipeline (:func:`wavespeed_async.ray.generate`) failed to read or write.

    For example an SQLite file that cannot be opened or written, a Redis server that cannot
    be reached.

    Attributes:
        location: The ledger's folder or Redis URL (without its password).
        task_id: The row's task, when one exists that the ledger may not have recorded.
    """

    def __init__(self, message: str, *, location: str = "", task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.location = location


class WebhookVerificationError(WaveSpeedError):
    """A webhook delivery failed verification (missing header, bad signature, stale time)."""
