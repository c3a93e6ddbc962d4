"""Spending budgets: a submit goes out only while its quote fits under every budget.

A job's quote is **reserved** before its submit (after its in-flight slot, before the start
window), against the batch's budget (``run_many(budget_usd=...)``) and the Client's
(``FlowLimits.budget_usd``; with a share, the account's, reserved atomically on the
server). The reservation is **kept** once the task exists, and when the submit's outcome is
unknown (a task may exist: counting it is the safe side); it is **given back** only when
the submit provably created nothing (refused, never connected, declined). A job that does
not fit raises :class:`~wavespeed_async.BudgetExceeded` and is never sent.

Committed spend is therefore the quotes of every job sent, minus refunds known so far. A
failed task is usually refunded: its refund is looked up (``billings/search``, one search
per 100 tasks) only when a job would not fit, and credited back before that job is judged.
"""

from __future__ import annotations

import collections
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Final, Protocol

import anyio

from wavespeed_async._core.errors import (
    APIStatusError,
    BudgetExceeded,
    ConnectError,
    DecodeError,
    SubmissionOutcomeUnknown,
    SubmitSkipped,
    TransportError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.money import MICRO, format_usd, from_micros, to_micros

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from wavespeed_async._core.spend import Quote
    from wavespeed_async._runtime.share import Share
    from wavespeed_async._runtime.spend import Pricing

__all__ = [
    "BATCH_BUDGET",
    "Budget",
    "Hold",
    "LocalBudget",
    "ShareBudget",
    "SpendGate",
    "limit_micros",
    "refused_before_creation",
]

log = logging.getLogger("wavespeed_async")

#: Created tasks whose reservation is remembered (for a refund), at most; oldest dropped.
MAX_OPEN: Final = 100_000
#: A failed task's refund is looked for this many times, then given up.
MAX_REFUND_LOOKUPS: Final = 3
#: Failed tasks looked up per refund search round.
REFUND_BATCH: Final = 500
#: Seconds between refund searches that find nothing new to look for.
REFUND_PAUSE_S: Final = 2.0


#: The budget of the batch a job runs in (set by ``run_many``'s job around its submit).
BATCH_BUDGET: ContextVar[Budget | None] = ContextVar("wavespeed_async_batch_budget", default=None)


def limit_micros(limit_usd: Decimal) -> int:
    """A budget in micro-dollars, rounded down (never more than was allowed)."""
    return int((limit_usd / MICRO).to_integral_value(ROUND_FLOOR))


class Budget(Protocol):
    """One budget that reservations are made against."""

    #: ``"batch"``, ``"client"`` or ``"account"``.
    scope: str

    @property
    def limit_usd(self) -> Decimal: ...

    @property
    def committed_usd(self) -> Decimal: ...

    async def reserve(self, micros: int) -> bool: ...

    def release(self, micros: int) -> None: ...


class LocalBudget:
    """A budget kept in this process (a batch's, or a Client's without a share)."""

    def __init__(self, limit_usd: Decimal, scope: str) -> None:
        self.scope = scope
        self._limit_usd = limit_usd
        self._limit = limit_micros(limit_usd)
        self._committed = 0

    def __repr__(self) -> str:
        spent, limit = format_usd(self.committed_usd), format_usd(self._limit_usd)
        return f"<LocalBudget {self.scope} {spent} / {limit}>"

    @property
    def limit_usd(self) -> Decimal:
        return self._limit_usd

    @property
    def committed_usd(self) -> Decimal:
        return from_micros(self._committed)

    async def reserve(self, micros: int) -> bool:
        if self._committed + micros > self._limit:
            return False
        self._committed += micros
        return True

    def release(self, micros: int) -> None:
        self._committed = max(0, self._committed - micros)

    def commit(self, micros: int) -> None:
        """Count ``micros`` as committed, whatever the limit (spend made elsewhere)."""
        self._committed += micros


class ShareBudget:
    """The Client's budget kept with every process of the account, through a share."""

    scope = "account"

    def __init__(self, share: Share, limit_usd: Decimal) -> None:
        self._share = share
        self._limit_usd = limit_usd
        self._limit = limit_micros(limit_usd)

    @property
    def limit_usd(self) -> Decimal:
        return self._limit_usd

    @property
    def committed_usd(self) -> Decimal:
        """The account's committed spend as this process last saw it."""
        return from_micros(self._share.spent())

    async def reserve(self, micros: int) -> bool:
        return await self._share.reserve_spend(micros, self._limit)

    def release(self, micros: int) -> None:
        self._share.release_spend(micros)


@dataclass(slots=True)
class Hold:
    """One job's reservation, against each of its budgets."""

    quote: Quote
    micros: int
    budgets: tuple[Budget, ...]
    given_back: int = 0

    def release(self) -> None:
        """Give the whole reservation back (the submit created nothing)."""
        self.credit(self.micros)

    def credit(self, micros: int) -> int:
        """Give back up to ``micros`` (a refund), never more than was reserved."""
        amount = min(micros, self.micros - self.given_back)
        if amount > 0:
            self.given_back += amount
            for b in self.budgets:
                b.release(amount)
        return max(amount, 0)


def refused_before_creation(exc: BaseException) -> bool:
    """Whether a submit that raised ``exc`` provably created no task.

    True for a refusal, a connection never made, a declined job; never for a lost or
    unreadable answer.
    """
    if isinstance(exc, (SubmitSkipped, ConnectError, BudgetExceeded)):
        return True
    if not isinstance(exc, WaveSpeedError) or exc.task_id is not None:
        return False
    if isinstance(exc, (SubmissionOutcomeUnknown, DecodeError, TransportError)):
        return False
    return isinstance(exc, (APIStatusError, ValidationError))


class SpendGate:
    """The budgets of one Client: reservations, and the refunds of failed tasks.

    Args:
        pricing: Quotes and costs.
        budget: The Client's own budget (``None``: only batches' budgets apply).
    """

    def __init__(self, pricing: Pricing, budget: Budget | None) -> None:
        self.pricing = pricing
        self.budget = budget
        self._open: collections.OrderedDict[str, Hold] = collections.OrderedDict()
        self._failed: dict[str, Hold] = {}
        self._lookups: dict[str, int] = {}
        self._new_failures = False
        self._last_search = -float("inf")
        self._searching: anyio.Lock | None = None
        #: Refunds credited back to budgets, USD.
        self.refunds_credited = Decimal(0)

    async def hold(self, model: str, body: Mapping[str, Any], batch: Budget | None) -> Hold | None:
        """Reserve the quote of ``model`` with ``body`` against every budget in force.

        Returns:
            The reservation, or ``None`` when no budget applies (nothing is quoted).

        Raises:
            BudgetExceeded: it does not fit (after crediting the refunds that could be found).
            WaveSpeedError: the quote could not be had (e.g. a model the API cannot price).
        """
        budgets = tuple(b for b in (batch, self.budget) if b is not None)
        if not budgets:
            return None
        quote = await self.pricing.quote(model, body)
        micros = to_micros(quote.cost_usd)
        short = await self._reserve(budgets, micros)
        if short is not None and await self.collect_refunds():
            short = await self._reserve(budgets, micros)
        if short is None:
            return Hold(quote, micros, budgets)
        committed = short.committed_usd
        where = {"batch": "the batch's", "client": "the Client's", "account": "the account's"}
        raise BudgetExceeded(
            f"budget: {model} costs {format_usd(quote.cost_usd)} and {where[short.scope]} "
            f"budget of {format_usd(short.limit_usd)} has {format_usd(committed)} committed; "
            "not sent",
            quote=quote,
            budget_usd=short.limit_usd,
            committed_usd=committed,
            scope=short.scope,
        )

    @staticmethod
    async def _reserve(budgets: tuple[Budget, ...], micros: int) -> Budget | None:
        """Reserve against all of ``budgets`` or none; the first that is short, if any."""
        taken: list[Budget] = []
        try:
            for b in budgets:
                if not await b.reserve(micros):
                    for t in taken:
                        t.release(micros)
                    return b
                taken.append(b)
        except BaseException:
            for t in taken:
                t.release(micros)
            raise
        return None

    def created(self, hold: Hold, task_id: str) -> None:
        """The reservation is now ``task_id``'s (kept; a refund may come back later)."""
        self._open[task_id] = hold
        if len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)

    def ended(self, task_id: str, *, failed: bool) -> None:
        """``task_id`` ended; a failed one's refund is looked for when a budget is short."""
        hold = self._open.pop(task_id, None)
        if hold is not None and failed:
            self._failed[task_id] = hold
            self._new_failures = True

    async def collect_refunds(self, clock: Callable[[], float] = anyio.current_time) -> bool:
        """Credit back the refunds of failed tasks; whether any was credited."""
        if not self._failed:
            return False
        if self._searching is None:
            self._searching = anyio.Lock()
        if self._searching.locked():  # another job is looking: its finds count for this one
            async with self._searching:
                return True
        if not self._new_failures and clock() - self._last_search < REFUND_PAUSE_S:
            return False
        async with self._searching:
            self._new_failures = False
            self._last_search = clock()
            ids = list(self._failed)[:REFUND_BATCH]
            try:
                costs = await self.pricing.costs(ids)
            except WaveSpeedError as exc:
                log.info("refunds could not be looked up (%s); the budget counts them spent", exc)
                return False
            credited = False
            for task_id in ids:
                cost = costs.get(task_id)
                if cost is not None and cost.refunded_usd > 0:
                    hold = self._failed.pop(task_id)
                    self._lookups.pop(task_id, None)
                    back = hold.credit(limit_micros(cost.refunded_usd))
                    self.refunds_credited += from_micros(back)
                    credited = credited or back > 0
                else:
                    n = self._lookups[task_id] = self._lookups.get(task_id, 0) + 1
                    if n >= MAX_REFUND_LOOKUPS:  # not refunded: it stays spent
                        self._failed.pop(task_id, None)
                        self._lookups.pop(task_id, None)
            return credited
