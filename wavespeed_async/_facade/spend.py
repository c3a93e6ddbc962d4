"""The Client's spend calls: quotes, budgets, real costs, the history and reconcile.

Every amount is a ``Decimal`` in USD. See ``docs/spend.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from wavespeed_async._core.errors import SubmissionOutcomeUnknown, ValidationError
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.money import to_micros
from wavespeed_async._core.reconcile import DEFAULT_SLACK_S, LostSubmit, Reconciled
from wavespeed_async._core.requests import TypedRequest, coerce_request
from wavespeed_async._core.spend import BatchQuote, Cost, HistoryEntry, Quote, summarise
from wavespeed_async._facade.jobs import job_request
from wavespeed_async._facade.results import BulkResult
from wavespeed_async._runtime.budget import (
    BATCH_BUDGET,
    Budget,
    Hold,
    LocalBudget,
    ShareBudget,
    SpendGate,
    refused_before_creation,
)
from wavespeed_async._runtime.spend import PAGE_SIZE, Pricing, iso_time

if TYPE_CHECKING:
    from wavespeed_async._core.catalog import Model
    from wavespeed_async._core.settings import FlowLimits
    from wavespeed_async._runtime.api import Api
    from wavespeed_async._runtime.input_check import InputChecks
    from wavespeed_async._runtime.share import Share

__all__ = ["Spend", "SpendStatus"]

_B = TypeVar("_B", bound="BulkResult[Any]")

#: Quote requests of ``quote_many`` in flight at once (one per input shape at most).
_QUOTES_AT_ONCE = 16
_STATUSES = ("created", "processing", "completed", "failed", "cancelled", "timeout")


class SpendStatus(msgspec.Struct, frozen=True):
    """Where a Client's spending stands (``client.spend_status()``).

    Attributes:
        budget_usd: The Client's budget (``FlowLimits.budget_usd``), or ``None``.
        committed_usd: Committed against it: the quotes of the tasks sent, minus refunds
            known so far (account-wide with a share, as this process last saw it).
        scope: ``"client"``, ``"account"`` (a share), or ``None`` without a budget.
        refunds_credited_usd: Refunds of failed tasks given back to budgets.
        quote_requests: Quote requests sent (each input shape once).
        quotes_reused: Quotes answered from the cache.
    """

    budget_usd: Decimal | None
    committed_usd: Decimal | None
    scope: str | None
    refunds_credited_usd: Decimal
    quote_requests: int
    quotes_reused: int


class Spend:
    """The spend calls of :class:`~wavespeed_async.Client` (see ``docs/spend.md``)."""

    _limits: FlowLimits
    _share: Share | None
    _pricing_state: Pricing | None = None
    _gate_state: SpendGate | None = None

    def _open(self) -> Api:
        raise NotImplementedError

    def _checks(self) -> InputChecks:
        raise NotImplementedError

    async def _catalogue_models(self) -> list[Model]:
        return await self._checks().models()

    def _pricing(self) -> Pricing:
        if self._pricing_state is None:
            # One catalogue per Client: the price rules come from the input check's cache.
            self._pricing_state = Pricing(self._open, models=self._catalogue_models)
        return self._pricing_state

    def _gate(self) -> SpendGate:
        if self._gate_state is None:
            self._open()  # settings final (the share bound) before the budget is made
            self._gate_state = SpendGate(self._pricing(), self._make_budget())
        return self._gate_state

    def _make_budget(self) -> Budget | None:
        limit = self._limits.budget_usd
        if limit is None:
            return None
        assert isinstance(limit, Decimal)  # noqa: S101 - FlowLimits made it one
        if self._share is not None:
            if not callable(getattr(self._share, "reserve_spend", None)):
                # Kept per process, n processes would spend n budgets: refuse instead.
                raise ValidationError(
                    "budget_usd",
                    f"budget_usd: the share {type(self._share).__name__} keeps no budget "
                    "(it has no reserve_spend); allowed: a share that does (RedisShare), or "
                    "a budget without a share",
                )
            return ShareBudget(self._share, limit)
        return LocalBudget(limit, "client")

    def _count_spent(self, amount: Decimal) -> None:
        """Count ``amount`` spent before this Client against its own budget.

        The amount is a resumed batch's earlier runs; an account-wide budget counts them
        already.
        """
        budget = self._gate().budget
        if isinstance(budget, LocalBudget):
            budget.commit(to_micros(amount))

    def _client_budget(self) -> Budget | None:
        return None if self._limits.budget_usd is None else self._gate().budget

    # -- what a submit does (called by the task calls) ----------------------------------

    async def _hold_spend(self, model: str, body: Mapping[str, Any]) -> Hold | None:
        return await self._gate().hold(model, body, BATCH_BUDGET.get())

    def _spend_settle(self, hold: Hold | None, exc: BaseException, *, sent: bool) -> None:
        if hold is not None and (not sent or refused_before_creation(exc)):
            hold.release()  # provably nothing created: the reservation goes back

    def _spend_created(self, hold: Hold | None, task_id: str) -> None:
        if hold is not None:
            self._gate().created(hold, task_id)

    def _spend_ended(self, task_id: str, *, failed: bool) -> None:
        if self._gate_state is not None:
            self._gate_state.ended(task_id, failed=failed)

    # -- public -----------------------------------------------------------------------------

    def spend_status(self) -> SpendStatus:
        """The Client's budget, what is committed against it, and the quote cache's counts."""
        pricing, gate = self._pricing_state, self._gate_state
        budget = gate.budget if gate is not None else None
        limit = self._limits.budget_usd
        return SpendStatus(
            budget_usd=limit if isinstance(limit, Decimal) else None,
            committed_usd=budget.committed_usd if budget is not None else None,
            scope=budget.scope if budget is not None else None,
            refunds_credited_usd=gate.refunds_credited if gate is not None else Decimal(0),
            quote_requests=pricing.quote_requests if pricing is not None else 0,
            quotes_reused=pricing.quote_hits if pricing is not None else 0,
        )

    async def quote(
        self, model: str | TypedRequest, input: Mapping[str, Any] | None = None
    ) -> Quote:
        """What one task of ``model`` with ``input`` will be charged (a free quote).

        Quotes are cached per model and input shape (the inputs that drive the price: see
        ``docs/spend.md``) for an hour, so many inputs of one shape cost one request.

        Raises:
            ValidationError: bad input, before anything is sent.
            NotFoundError: the API cannot price this model.
        """
        if isinstance(model, TypedRequest):
            path, body = coerce_request(model, input)
        else:
            path, body = coerce_request(model, {} if input is None else input)
        return await self._pricing().quote(path, body)

    async def quote_many(
        self, model: str | None, inputs: Iterable[Any] | AsyncIterable[Any]
    ) -> BatchQuote:
        """The quote of a whole batch: one :class:`Quote` per input, totals per model, the total.

        Inputs are given as ``run_many`` takes them. One request per input shape; shapes are
        quoted a few at a time.

        Raises:
            ValidationError: an input is bad (naming its index), before anything is sent.
            NotFoundError: the API cannot price one of the models.
        """
        requests: list[tuple[str, dict[str, Any]]] = []
        index = 0
        async for item in _each(inputs):
            job_model, job_input = job_request(model, index, item)
            if isinstance(job_model, TypedRequest):
                requests.append(coerce_request(job_model, None))
            else:
                requests.append(coerce_request(job_model, job_input or {}))
            index += 1
        quotes: list[Quote | None] = [None] * len(requests)
        pricing = self._pricing()
        limiter = anyio.CapacityLimiter(_QUOTES_AT_ONCE)

        async def one(i: int, path: str, body: dict[str, Any]) -> None:
            async with limiter:
                quotes[i] = await pricing.quote(path, body)

        async with anyio.create_task_group() as tg:
            for i, (path, body) in enumerate(requests):
                tg.start_soon(one, i, path, body)
        return summarise([q for q in quotes if q is not None])

    async def costs(self, tasks: Iterable[str | Prediction | BulkResult[Any]]) -> dict[str, Cost]:
        """What each task cost, from the account's billing records, in the order given.

        Its charges, refunds and net (``Cost``), by task id. One ``billings/search`` per
        100 tasks. Results without a task id are skipped; a task with no record has a
        ``Cost`` whose ``known`` is false.

        Raises:
            ValidationError: a string that is not a task id.
        """
        ids: list[str] = []
        for i, t in enumerate(tasks):
            if isinstance(t, Prediction):
                ids.append(t.id)
            elif isinstance(t, BulkResult):
                if t.id is not None:
                    ids.append(t.id)
            else:
                ids.append(check_task_id(t, f"tasks[{i}]"))
        if not ids:
            return {}
        return await self._pricing().costs(ids)

    async def with_costs(self, results: Iterable[_B]) -> list[_B]:
        """``results`` with ``cost_usd`` filled in from billing records.

        The net cost of each task; 0 where no task was created, ``None`` where no record was
        found.
        """
        kept = list(results)
        found = await self.costs([r for r in kept if r.id is not None])
        out = []
        for r in kept:
            cost = found.get(r.id) if r.id is not None else None
            if cost is not None and cost.known:
                r = dataclasses.replace(r, cost_usd=cost.net_usd)
            out.append(r)
        return out

    def predictions(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: datetime | float | str | None = None,
        created_before: datetime | float | str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[HistoryEntry]:
        """The account's task history (about the last 7 days), newest first, every page.

        For example::

            async for entry in client.predictions(model=MODEL, status="failed"):
                print(entry.id, entry.created_at, entry.error)

        Args:
            model: Only this model's tasks.
            status: Only tasks in this status (created, processing, completed, failed,
                cancelled, timeout).
            created_after, created_before: A datetime (naive: UTC), unix seconds or ISO
                8601 text; both ends included.
            page_size: Entries per request (1 ~ 100).

        Raises:
            ValidationError: an argument out of range, before anything is sent.
        """
        if status is not None and status not in _STATUSES:
            raise ValidationError(
                "status", f"status: {status!r}; allowed: one of {', '.join(_STATUSES)}"
            )
        if not isinstance(page_size, int) or not 1 <= page_size <= PAGE_SIZE:
            raise ValidationError(
                "page_size", f"page_size: {page_size!r}; allowed: an integer 1 ~ {PAGE_SIZE}"
            )
        return self._pricing().history(
            model=model,
            status=status,
            created_after=iso_time(created_after, "created_after"),
            created_before=iso_time(created_before, "created_before"),
            page_size=page_size,
        )

    async def reconcile(
        self,
        unknown: Iterable[SubmissionOutcomeUnknown | BulkResult[Any] | LostSubmit],
        *,
        exclude: Iterable[str] = (),
        slack_s: float = DEFAULT_SLACK_S,
    ) -> list[Reconciled]:
        """Find the tasks of submits whose answer was lost, in the account's history.

        For each lost submit (a :class:`SubmissionOutcomeUnknown`, a ``BulkResult`` that
        carries one, or a :class:`LostSubmit` such as a journal's ``unknown`` row), look
        for a task of the same model created in the submit's time window whose input
        agrees with the input sent (what is matched on: ``docs/spend.md``). A submit with
        no such task stays unknown (``found`` false): it may never have reached the
        server. Nothing is submitted.

        Args:
            unknown: The lost submits.
            exclude: Task ids already accounted for (e.g. the other tasks of the batch),
                never given to a lost submit.
            slack_s: Seconds added either side of each submit's window (clock skew).

        Returns:
            One :class:`Reconciled` per lost submit, in order: its ``task_id`` when found.

        Raises:
            ValidationError: an item without the time it was sent.
        """
        lost = [_lost_submit(i, u) for i, u in enumerate(unknown)]
        if not lost:
            return []
        return await self._pricing().reconcile(lost, exclude=exclude, slack_s=slack_s)


def _lost_submit(index: int, item: object) -> LostSubmit:
    if isinstance(item, LostSubmit):
        return item
    error = item.error if isinstance(item, BulkResult) else item
    if isinstance(error, SubmissionOutcomeUnknown) and error.sent_at is not None:
        return LostSubmit(error.model, dict(error.input), error.sent_at, error.lost_at)
    raise ValidationError(
        "unknown",
        f"unknown[{index}]: {type(item).__name__} is not a lost submit; allowed: a "
        "SubmissionOutcomeUnknown raised by this client, a BulkResult carrying one, or a "
        "LostSubmit",
    )


async def _each(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
