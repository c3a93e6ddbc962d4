"""One job lifecycle for every store: the states a job goes through, and what each means.

A job (a line of the command line's jobs file, a row of a Ray pipeline) becomes at most one
billed task. Both stores, the command line's journal and the Ray ledger, record it through
the same states::

    pending | claimed -> submitting -> created -> completed | failed
                              |
                              +-> unknown   (the answer was lost: a task MAY exist)

``pending`` (the journal) and ``claimed`` (the ledger, with its owner) both mean that
nothing was sent. ``submitting`` is written just before a request is sent, so a process
that dies while it is out leaves the job ``unknown``, never silently re-sent. ``invalid``
(the journal) is a line that cannot run at all.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["FINISHED", "NOT_SENT", "JobState"]


class JobState(str, enum.Enum):
    """Where a job is in its lifecycle (stored as its value)."""

    #: Known, nothing sent (the journal).
    PENDING = "pending"
    #: Taken by a worker that waits for its turn to send it; nothing sent (the ledger).
    CLAIMED = "claimed"
    #: Its submit is being sent: a task may exist from here on.
    SUBMITTING = "submitting"
    #: Its task exists (the task id is recorded).
    CREATED = "created"
    #: The task completed (its outputs are recorded).
    COMPLETED = "completed"
    #: The task failed, or the submit was refused: no outputs.
    FAILED = "failed"
    #: The submit's answer was lost: a billed task may or may not exist.
    UNKNOWN = "unknown"
    #: The job cannot run (bad input); nothing was sent.
    INVALID = "invalid"

    def __str__(self) -> str:
        return self.value


#: States after which nothing is left to do for a job.
FINISHED: Final = frozenset({JobState.COMPLETED, JobState.FAILED})
#: States in which nothing was sent: no task can exist.
NOT_SENT: Final = frozenset({JobState.PENDING, JobState.CLAIMED, JobState.INVALID})
