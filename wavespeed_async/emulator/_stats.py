"""Snapshots of what the emulator saw: served as JSON at ``GET /_emulator/stats``."""

from __future__ import annotations

import msgspec

__all__ = ["EmulatorStats", "TaskRecord"]


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
    webhook_failures: int
    sync_timeouts: int
    media_requests: int
    #: Media downloads that carried an Authorization header (a client must never do that).
    media_requests_with_auth: int
    uploads: int
    balance: float
    #: Tasks created since the last reset, by id.
    tasks: dict[str, TaskRecord]
