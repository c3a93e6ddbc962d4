"""Events: one typed record per thing that happens to a task or to a Client (pure data).

A Client emits these to ``Client(on_event=...)``, to listeners added with
``client.add_event_listener(...)`` and to ``client.events()`` streams; nothing is built
when no one listens. Every event has:

* ``kind``: its name (``"created"``, ``"status"``, ...), also the ``kind`` field of its JSON;
* ``task_id``: the task, once one exists (``None`` before the submit is answered, and for
  events of the whole Client such as a cool-down started by another process);
* ``index``: the input's index in ``run_many`` / ``wait_many``, when the event belongs to
  one of their jobs;
* ``ref``: a number, unique per Client, shared by the events of one *follow* of a task (a
  submit and the waits that follow it, or a ``wait()`` of an id from elsewhere): it ties a
  ``submitting`` and its ``retry`` events to the ``created`` that follows, before any id;
* ``at``: the event loop's monotonic clock (``loop.time()``), in seconds: subtract two to
  get a duration that no clock adjustment can distort;
* ``time``: the wall clock (Unix seconds), to show, log, or line up with other processes.

Each follow ends with exactly one terminal event (``ev.terminal``): ``completed``,
``failed``, ``unknown`` (a submit whose outcome cannot be known, no id), ``timeout`` or
``abandoned`` (every wait of it stopped: cancelled, or the Client closed). Nothing of that
follow comes after it; waiting for the same task again later starts a new follow
(``waiting``). A task that is submitted and never waited for has no terminal event.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, get_args

import msgspec

__all__ = [
    "EVENT_KINDS",
    "TERMINAL_KINDS",
    "AbandonedEvent",
    "AnyEvent",
    "CompletedEvent",
    "CooldownEvent",
    "CreatedEvent",
    "DeliveredEvent",
    "DroppedEvent",
    "EndEvent",
    "Event",
    "FailedEvent",
    "RetryEvent",
    "StatusEvent",
    "SubmittingEvent",
    "TimeoutEvent",
    "UnknownEvent",
    "WaitingEvent",
    "event_decoder",
]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """What every event carries (see the module's docstring)."""

    #: The event's name, as in its JSON.
    kind: ClassVar[str] = "event"
    #: Whether it ends its follow (nothing of that follow comes after it).
    terminal: ClassVar[bool] = False

    #: The event loop's monotonic clock, seconds.
    at: float
    #: The wall clock, Unix seconds.
    time: float
    task_id: str | None = None
    index: int | None = None
    ref: int | None = None


class SubmittingEvent(Event, frozen=True, kw_only=True, tag="submitting"):
    """A submit is about to be sent (after it waited for the Client's limits)."""

    kind: ClassVar[str] = "submitting"
    model: str


class CreatedEvent(Event, frozen=True, kw_only=True, tag="created"):
    """The server created the task: its id exists (and it is billed)."""

    kind: ClassVar[str] = "created"
    model: str
    #: The status in the submit's answer (``created``; ``completed`` in sync mode).
    status: str
    #: Submitted with a webhook (its result is expected by delivery).
    webhook: bool = False


class WaitingEvent(Event, frozen=True, kw_only=True, tag="waiting"):
    """A ``wait()`` started following a task that no follow of this Client had open.

    The task is an id from elsewhere, or one whose earlier follow ended.
    """

    kind: ClassVar[str] = "waiting"
    model: str = ""
    #: The last status known when the wait started, if any.
    status: str | None = None


class StatusEvent(Event, frozen=True, kw_only=True, tag="status"):
    """A poll saw a new status of a task that has not ended (e.g. ``processing``).

    The end itself is told by the terminal event, not by a ``status``.
    """

    kind: ClassVar[str] = "status"
    status: str
    #: The status known before (``None``: not known to this follow).
    previous: str | None = None


class RetryEvent(Event, frozen=True, kw_only=True, tag="retry"):
    """A request failed in a way that is retried; it is sent again after ``delay_s``."""

    kind: ClassVar[str] = "retry"
    #: ``"submit"``, ``"poll"``, or the method of another call (``"GET"``, ``"POST"``).
    request: str
    #: ``"rate_limit"`` (429), ``"server_error"``, ``"reset"``, ``"timeout"``,
    #: ``"connect"`` or ``"malformed"``.
    cause: str
    #: The attempt that failed (1 for the first).
    attempt: int
    delay_s: float
    #: The HTTP status (or the envelope's code, when a 200 carried an error), if any.
    http_status: int | None = None


class CooldownEvent(Event, frozen=True, kw_only=True, tag="cooldown"):
    """A 429 started (or lengthened) a pause of every request of the Client."""

    kind: ClassVar[str] = "cooldown"
    seconds: float
    #: Started by another process of the account (through the share).
    remote: bool = False


class DeliveredEvent(Event, frozen=True, kw_only=True, tag="delivered"):
    """A webhook delivery woke the wait for this task."""

    kind: ClassVar[str] = "delivered"
    status: str
    #: Received by another process and passed on through the share.
    remote: bool = False


class EndEvent(Event, frozen=True, kw_only=True):
    """What every terminal event carries."""

    terminal: ClassVar[bool] = True
    model: str = ""
    #: The task's last known status (``None``: never known).
    status: str | None = None
    #: Polls of this follow that got an answer.
    polls: int = 0
    #: From the task's creation (or, for an id from elsewhere, the start of the wait) to
    #: this event, seconds; ``None`` when neither happened in this follow.
    duration_s: float | None = None


class CompletedEvent(EndEvent, frozen=True, kw_only=True, tag="completed"):
    """The task completed."""

    kind: ClassVar[str] = "completed"
    outputs: list[Any] = msgspec.field(default_factory=list)
    #: The server's inference time, milliseconds, if it said.
    inference_ms: float | None = None
    #: An upper bound on how late the end was seen: from the last poll that saw the task
    #: running to the poll that saw it ended; ``None`` when a delivery or the submit's
    #: answer told it.
    detect_s: float | None = None
    #: A webhook delivery told the end.
    delivered: bool = False


class FailedEvent(EndEvent, frozen=True, kw_only=True, tag="failed"):
    """The task ended in failure, or the call ended with an error.

    On a task failure ``status`` is ``failed``, ``cancelled``, ``timeout`` or ``deleted``. A
    call's error is a submit refused (no ``task_id``), or a task that cannot be followed
    (unknown id, retries used up).
    """

    kind: ClassVar[str] = "failed"
    #: The error's message.
    error: str = ""
    #: The error's class name (``TaskFailedError``, ``BadRequestError``, ...).
    error_type: str = ""
    #: The task's error code, or the API's, when given.
    code: int | None = None
    #: The HTTP status of a refused request, if any.
    http_status: int | None = None
    detect_s: float | None = None
    delivered: bool = False


class UnknownEvent(EndEvent, frozen=True, kw_only=True, tag="unknown"):
    """A submit whose answer was lost: a task may exist (and be billed); no id is known."""

    kind: ClassVar[str] = "unknown"
    #: What went wrong (``"reset"``, ``"timeout"``, ``"server_error"``, ``"cancelled"``...).
    cause: str = ""
    error: str = ""


class TimeoutEvent(EndEvent, frozen=True, kw_only=True, tag="timeout"):
    """The caller's deadline passed; the task still runs on the server."""

    kind: ClassVar[str] = "timeout"
    #: The wait's limit, seconds.
    limit_s: float | None = None


class AbandonedEvent(EndEvent, frozen=True, kw_only=True, tag="abandoned"):
    """Every wait of the task stopped before its end; the task still runs on the server."""

    kind: ClassVar[str] = "abandoned"
    #: ``"cancelled"`` (the caller was cancelled) or ``"closed"`` (the Client closed).
    reason: str = "cancelled"


class DroppedEvent(Event, frozen=True, kw_only=True, tag="dropped"):
    """Given by an ``events()`` stream in place of events it dropped.

    Its reader fell ``count`` events behind its buffer (the oldest were dropped).
    """

    kind: ClassVar[str] = "dropped"
    count: int


AnyEvent = (
    SubmittingEvent
    | CreatedEvent
    | WaitingEvent
    | StatusEvent
    | RetryEvent
    | CooldownEvent
    | DeliveredEvent
    | CompletedEvent
    | FailedEvent
    | UnknownEvent
    | TimeoutEvent
    | AbandonedEvent
    | DroppedEvent
)
_CLASSES: Final[tuple[type[Event], ...]] = get_args(AnyEvent)
#: Every kind, in the order a task meets them.
EVENT_KINDS: Final = tuple(c.kind for c in _CLASSES)
TERMINAL_KINDS: Final = frozenset(c.kind for c in _CLASSES if c.terminal)
#: Decodes an event's JSON (``msgspec.json.encode(event)``) back to its class.
event_decoder: Final = msgspec.json.Decoder(AnyEvent)
