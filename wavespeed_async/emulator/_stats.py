"""What the emulator saw: the live counters, and their snapshots.

``EmulatorStats`` is served as JSON at ``GET /_emulator/stats``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from wavespeed_async.emulator._tasks import Task

__all__ = ["Counters", "EmulatorStats", "TaskRecord"]


class TaskRecord(msgspec.Struct, frozen=True):
    """The server-side record of one task. Times are emulator-clock seconds."""

    id: str
    model: str
    prompt: str
    #: The true status (``deleted`` once deleted), whatever faults showed to clients.
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    #: When a client first saw the terminal status (a GET answer or a webhook delivery).
    first_seen_finished_at: float | None
    polls: int
    webhook_deliveries: int
    webhook_failures: int = 0
    code: int | None = None
    error: str = ""
    num_images: int = 1
    width: int = 0
    height: int = 0
    seed: int = 0
    webhook_url: str | None = None
    #: ``image`` (PNG outputs) or ``video`` (MP4 outputs).
    output: str = "image"
    #: Input keys the model does not take, dropped without a word (the task ran anyway).
    dropped_inputs: tuple[str, ...] = ()
    #: What the task was charged when it was created, USD (after any discount).
    price: Decimal = Decimal(0)
    #: The task failed and its price was refunded.
    refunded: bool = False


class EmulatorStats(msgspec.Struct, frozen=True):
    """Counters since the emulator started or since the last ``reset_stats()``."""

    #: POSTs to model paths, whatever their answer (faulted, refused, invalid).
    submits_received: int
    tasks_created: int
    #: Tasks created per prompt text, and the prompts that got more than one task.
    tasks_per_prompt: dict[str, int]
    duplicate_prompts: list[str]
    #: GETs of each task's result (faulted ones included).
    polls_per_task: dict[str, int]
    polls_total: int
    #: Requests to the API and media paths (``/_emulator/*`` excluded).
    requests_total: int
    max_concurrent_requests: int
    #: Injected faults by kind (rate_limit, server_error, reset, malformed, stall), then by
    #: phase ("before"/"after" creation on submits, "poll" on GETs).
    faults: dict[str, dict[str, int]]
    #: 429s answered because of ``Limits.submits_per_minute``.
    rate_limited: int
    #: Largest number of tasks in ``processing`` at once.
    max_running: int
    running: int
    queued: int
    tasks_completed: int
    tasks_failed: int
    webhook_deliveries: int
    #: Deliveries that did not arrive: dropped, refused (not loopback), errors, non-2xx.
    webhook_failures: int
    #: Of those, the deliveries refused because the host is not a loopback address.
    webhook_refused: int
    sync_timeouts: int
    media_requests: int
    #: Media downloads that carried an Authorization header (a client must never do that).
    media_requests_with_auth: int
    uploads: int
    #: The account balance now, USD.
    balance: Decimal
    #: What tasks created were charged, and what failed tasks got back, USD.
    charged_usd: Decimal
    refunded_usd: Decimal
    #: Submits refused because their price exceeded the balance (``enforce_balance``).
    balance_refusals: int
    #: Unknown input keys dropped from submits, by key (each counted once per task).
    inputs_dropped: dict[str, int]
    #: Tasks created since the last reset, by id.
    tasks: dict[str, TaskRecord]


class Counters:
    """The live counters behind ``EmulatorStats``, shared by the emulator's parts."""

    def __init__(self) -> None:
        self.reset(in_flight=0, running=0)

    def reset(self, *, in_flight: int, running: int) -> None:
        """Zero everything; the maxima restart from what is in flight and running now."""
        self.submits_received = 0
        self.tasks_per_prompt: dict[str, int] = {}
        #: Tasks created since the last reset, by id.
        self.tasks: dict[str, Task] = {}
        self.polls_total = 0
        self.requests_total = 0
        self.max_concurrent = in_flight
        self.faults: dict[str, dict[str, int]] = {}
        self.rate_limited = 0
        self.max_running = running
        self.completed = 0
        self.failed = 0
        self.webhook_ok = 0
        self.webhook_failed = 0
        self.webhook_refused = 0
        self.sync_timeouts = 0
        self.media_requests = 0
        self.media_with_auth = 0
        self.uploads = 0
        self.charged_usd = Decimal(0)
        self.refunded_usd = Decimal(0)
        self.balance_refusals = 0
        self.inputs_dropped: dict[str, int] = {}

    def count_task(self, task: Task) -> None:
        self.tasks[task.id] = task
        self.tasks_per_prompt[task.prompt] = self.tasks_per_prompt.get(task.prompt, 0) + 1
        for key in task.dropped:
            self.inputs_dropped[key] = self.inputs_dropped.get(key, 0) + 1

    def count_fault(self, kind: str, phase: str) -> None:
        by_phase = self.faults.setdefault(kind, {})
        by_phase[phase] = by_phase.get(phase, 0) + 1

    def snapshot(
        self, all_tasks: Iterable[Task], *, running: int, queued: int, balance: Decimal
    ) -> EmulatorStats:
        return EmulatorStats(
            submits_received=self.submits_received,
            tasks_created=len(self.tasks),
            tasks_per_prompt=dict(self.tasks_per_prompt),
            duplicate_prompts=[p for p, n in self.tasks_per_prompt.items() if n > 1],
            polls_per_task={t.id: t.polls for t in all_tasks if t.polls},
            polls_total=self.polls_total,
            requests_total=self.requests_total,
            max_concurrent_requests=self.max_concurrent,
            faults={k: dict(v) for k, v in self.faults.items()},
            rate_limited=self.rate_limited,
            max_running=self.max_running,
            running=running,
            queued=queued,
            tasks_completed=self.completed,
            tasks_failed=self.failed,
            webhook_deliveries=self.webhook_ok,
            webhook_failures=self.webhook_failed,
            webhook_refused=self.webhook_refused,
            sync_timeouts=self.sync_timeouts,
            media_requests=self.media_requests,
            media_requests_with_auth=self.media_with_auth,
            uploads=self.uploads,
            balance=balance,
            charged_usd=self.charged_usd,
            refunded_usd=self.refunded_usd,
            balance_refusals=self.balance_refusals,
            inputs_dropped=dict(self.inputs_dropped),
            tasks={tid: t.record() for tid, t in self.tasks.items()},
        )
