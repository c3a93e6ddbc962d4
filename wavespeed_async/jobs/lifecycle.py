"""One job lifecycle for every store: its states, the steps allowed, and the store interface.

A job (a line of the command line's jobs file, a row of a Ray pipeline) becomes at most one
billed task. Every store, the command line's journal and the Ray ledger (SQLite or Redis),
records it through the same states::

    pending | claimed -> submitting -> created -> completed | failed
                  ^           |
                  +-----------+-> unknown   (the answer was lost: a task MAY exist)
                 (not sent: a 429, a 503 with Retry-After, a connect failure)

``pending`` (the journal) and ``claimed`` (the ledger, with its owner) both mean that
nothing was sent. ``submitting`` is written just before each send of a request, and taken
back (to ``pending`` / ``claimed``) after an answer that proves no task was created, so a
process that dies while a request is out leaves the job ``unknown`` (never silently
re-sent), and one that dies while it waits out a 429 leaves it re-sendable. ``invalid``
(the journal) is a line that cannot run at all.

:data:`STEPS` is the one table of allowed steps; every store enforces it, and a step it
does not allow is a :class:`~wavespeed_async.LedgerError` (as is a store that cannot be
read or written). A user's explicit decision to run a job again (``--retry-failed``,
``--resubmit-unknown``, deleting a ledger row) is not a step of the lifecycle.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final, Protocol, TypeVar

from wavespeed_async._core.errors import LedgerError

__all__ = [
    "FINISHED",
    "NOT_SENT",
    "STEPS",
    "JobState",
    "JobStore",
    "check_step",
    "sources_of",
    "state_of_value",
]


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

_S = JobState
#: The allowed steps: from each state (``None``: the store has no entry), the states a job
#: may go to (``None``: its entry is dropped, a ledger's claim released).
STEPS: Final[Mapping[JobState | None, frozenset[JobState | None]]] = {
    None: frozenset({_S.PENDING, _S.CLAIMED, _S.INVALID}),
    _S.PENDING: frozenset({_S.SUBMITTING, _S.FAILED, _S.INVALID}),
    # Claimed again: taken over by another worker.
    _S.CLAIMED: frozenset({_S.CLAIMED, _S.SUBMITTING, None}),
    # Back to pending / claimed: the answer proved that no task was created.
    _S.SUBMITTING: frozenset({_S.CREATED, _S.UNKNOWN, _S.FAILED, _S.PENDING, _S.CLAIMED, None}),
    _S.CREATED: frozenset({_S.CREATED, _S.COMPLETED, _S.FAILED}),
    # A finished job's result recorded again (checked against the API, say).
    _S.COMPLETED: frozenset({_S.COMPLETED}),
    _S.FAILED: frozenset({_S.FAILED, _S.INVALID}),
    _S.UNKNOWN: frozenset(),
    _S.INVALID: frozenset({_S.INVALID}),
}


def sources_of(target: JobState | None) -> frozenset[JobState | None]:
    """The states from which a job may step to ``target``."""
    return frozenset(s for s, targets in STEPS.items() if target in targets)


def check_step(
    old: JobState | None,
    new: JobState | None,
    *,
    what: str,
    location: str = "",
    error: type[LedgerError] = LedgerError,
    task_id: str | None = None,
) -> None:
    """Raise ``error`` unless ``old -> new`` is a step of the lifecycle.

    ``error`` is a LedgerError naming ``what``, e.g. the row.
    """
    if new not in STEPS[old]:
        shown_old = "no entry" if old is None else old.value
        shown_new = "no entry" if new is None else new.value
        raise error(
            f"{what}: cannot go from {shown_old} to {shown_new}", location=location, task_id=task_id
        )


def state_of_value(value: object, *, what: str, location: str = "") -> JobState:
    """The state a store holds as ``value``.

    Raises:
        LedgerError: not a state (a damaged store).
    """
    try:
        return JobState(value)
    except ValueError:
        raise LedgerError(
            f"{what}: the store holds the state {value!r:.40}, which is not one", location=location
        ) from None


K_contra = TypeVar("K_contra", contravariant=True)


class JobStore(Protocol[K_contra]):
    """The lifecycle steps of one store of jobs, by key.

    The key is a line number for the journal, a row key for a ledger. Every method enforces
    :data:`STEPS`.

    Raises (every method):
        LedgerError: the step is not allowed from the job's state, or the store cannot be
            read or written (the message names the store, and the job).
    """

    @property
    def location(self) -> str:
        """Where the store is (a file, a folder, a URL without its password)."""
        ...

    def state_of(self, key: K_contra) -> JobState | None:
        """The job's state; ``None`` when the store has no entry for it."""
        ...

    def mark_submitting(self, key: K_contra, *, owner: str = "") -> bool:
        """Just before each send of the job's submit.

        ``False``: do not send it (a ledger: the claim is no longer ``owner``'s).
        """
        ...

    def mark_not_sent(self, key: K_contra, *, owner: str = "") -> bool:
        """The submit was answered in a way that proves no task was created.

        The job is re-sendable again (``pending`` / ``claimed``). ``False``: it was not
        submitting.
        """
        ...

    def mark_created(self, key: K_contra, task_id: str) -> None:
        """The job's task exists (call the moment its id is known)."""
        ...

    def mark_finished(
        self,
        key: K_contra,
        state: JobState,
        *,
        task_id: str | None = None,
        outputs: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """The job ended: ``completed`` (with its outputs) or ``failed``."""
        ...

    def mark_unknown(self, key: K_contra, error: str) -> None:
        """The submit's answer was lost: a task may exist; never re-sent silently."""
        ...
