"""What a bulk run reports: one result per job, and live counters of the batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio

from wavespeed_async._core.errors import WaveSpeedError
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.money import format_usd

if TYPE_CHECKING:
    from wavespeed_async._runtime.budget import Budget

__all__ = ["BulkFailed", "BulkOk", "BulkOutcome", "BulkResult", "Progress"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BulkResult(Generic[T]):
    """The outcome of one job of a batch.

    Attributes:
        index: The job's position in the inputs (0-based).
        input: The input as given (``None`` for :meth:`Client.wait_many`).
        id: The task id, or ``None`` when no task was created (bad input, a refused
            submit, or a submit whose outcome is unknown: see ``error``).
        prediction: The final Prediction (``None`` if the task did not complete; for a
            failed task, the failed Prediction).
        error: Why the job did not complete, or ``None``.
        cost_usd: What the job cost, when known (a ``Decimal``): ``0`` when it provably
            created no task (held back by a budget, refused, invalid); otherwise ``None``
            until filled in by ``await client.with_costs(results)`` from billing records.
    """

    index: int
    input: T | None
    id: str | None
    prediction: Prediction | None
    error: WaveSpeedError | None
    cost_usd: Decimal | None = None

    @property
    def ok(self) -> bool:
        """Whether the task completed."""
        return self.error is None and self.prediction is not None

    @property
    def outputs(self) -> list[Any]:
        """The completed task's outputs (empty otherwise)."""
        return self.prediction.outputs if self.prediction is not None and self.ok else []


class BulkOk(BulkResult[T]):
    """A job whose task completed: ``prediction`` and ``id`` are set, ``error`` is None.

    ``if r.ok:`` narrows a result to this type for type checkers, so
    ``await client.download(r.prediction, ...)`` checks under ``mypy --strict``.
    """

    __slots__ = ()
    if TYPE_CHECKING:
        id: str
        prediction: Prediction
        error: None

    @property
    def ok(self) -> Literal[True]:
        """Always true: the task completed."""
        return True


class BulkFailed(BulkResult[T]):
    """A job that did not complete: ``error`` says why.

    ``id`` is None when no task was created; ``prediction`` is the failed task's, when
    there is one.
    """

    __slots__ = ()
    if TYPE_CHECKING:
        error: WaveSpeedError

    @property
    def ok(self) -> Literal[False]:
        """Always false: see ``error``."""
        return False


#: What ``run_many``/``wait_many`` yield: ``if r.ok`` tells the two apart, for type
#: checkers too.
BulkOutcome = BulkOk[T] | BulkFailed[T]


@dataclass(slots=True)
class Progress:
    """Live counters of a batch, safe to read at any time (from a progress bar, a page).

    ``queued``: inputs taken, not yet submitted; ``submitting``: submits under way;
    ``running``: tasks created, not yet ended; ``completed`` / ``failed``: ended;
    ``skipped``: declined by ``on_submitting`` (nothing sent); ``held_back``: held back by
    a budget (nothing sent); ``total``: the number of inputs when known in advance.
    With a budget in force, ``spent_usd`` / ``budget_usd`` are its committed spend and
    its limit (the batch's budget, else the Client's).
    """

    total: int | None = None
    queued: int = 0
    submitting: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    held_back: int = 0
    started_at: float = field(default_factory=anyio.current_time)
    #: The budget shown as spent / budget (``None``: no budget in force).
    budget: Budget | None = field(default=None, repr=False)

    @property
    def done(self) -> int:
        """Jobs ended, whichever way."""
        return self.completed + self.failed + self.skipped + self.held_back

    @property
    def spent_usd(self) -> Decimal | None:
        """The committed spend of the budget in force (``None`` without one)."""
        return None if self.budget is None else self.budget.committed_usd

    @property
    def budget_usd(self) -> Decimal | None:
        """The limit of the budget in force (``None`` without one)."""
        return None if self.budget is None else self.budget.limit_usd

    @property
    def elapsed_s(self) -> float:
        return anyio.current_time() - self.started_at

    @property
    def rate_per_s(self) -> float:
        """Jobs ended per second since the start."""
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, or ``None``.

        ``None`` when the number of inputs is not known (a generator has no ``len()``) or
        nothing has ended yet.
        """
        if self.total is None or self.rate_per_s == 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate_per_s)

    def __str__(self) -> str:
        """``12/40 done (11 ok, 1 failed); 8 running, 20 queued; 3.1/s, ETA 9 s``.

        With a budget, followed by ``; $0.48 / $1.00 spent``.
        """
        total = f"/{self.total}" if self.total is not None else ""
        eta = self.eta_s
        eta_text = f", ETA {eta:.0f} s" if eta is not None and self.done != self.total else ""
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        held = f", {self.held_back} over budget" if self.held_back else ""
        budget = self.budget
        spend = (
            ""
            if budget is None
            else f"; {format_usd(budget.committed_usd)} / {format_usd(budget.limit_usd)} spent"
        )
        return (
            f"{self.done}{total} done ({self.completed} ok, {self.failed} failed{skipped}"
            f"{held}); {self.running} running, {self.submitting + self.queued} queued; "
            f"{self.rate_per_s:.1f}/s{eta_text}{spend}"
        )
