"""What a batch costs: quotes, the spend cap, the balance check and each task's real cost.

* ``--dry-run`` quotes the jobs that a run would submit (per model, in total, against the
  balance) and sends no submit: nothing is written to the output folder either.
* Before a batch submits anything, its quote (up to ``--max-spend``) is compared with the
  balance; a batch that would run out of money is refused (exit 2) unless
  ``--ignore-balance``.
* ``--max-spend USD`` is the Client's budget (``FlowLimits.budget_usd``); with ``--share``
  it is account-wide. A resumed batch counts what its earlier runs cost against it. A job
  held back stays ``pending`` (``not_submitted`` in the manifest), with why.
* After a run, the real cost of every task of the batch is read from the billing records
  (``client.costs``) and kept in the journal's metadata (``costs``), for the manifest's
  ``cost_usd`` and the gallery.
* ``--reconcile`` looks for the tasks of ``unknown`` lines in the account's history before
  the batch is planned; a line whose task is found is collected like any created task.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from wavespeed_async._core.errors import ValidationError, WaveSpeedError
from wavespeed_async._core.money import ZERO, format_usd, plain_usd, usd_amount
from wavespeed_async._core.reconcile import LostSubmit
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._core.spend import Quote
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._common import (
    REFUSED,
    Target,
    UsageError,
    err,
    open_client,
    run_loop,
)
from wavespeed_async.cli._jobs import Job, inputs_as_sent
from wavespeed_async.cli._plan import EMULATOR_TARGET, Plan, lines_text
from wavespeed_async.cli._progress import Counters
from wavespeed_async.jobs.async_journal import AsyncJournal
from wavespeed_async.jobs.journal import JobRecord, Journal

if TYPE_CHECKING:
    from wavespeed_async._runtime.share import Share

__all__ = [
    "COSTS_META",
    "add_spend_options",
    "after_run",
    "before_run",
    "cached_costs",
    "check_spend_args",
    "dry_run",
    "preflight",
    "reconcile_journal",
    "record_costs",
    "spend_limits",
    "spend_share",
    "spend_summary",
]

#: The journal's metadata key holding ``{task_id: net cost}`` of the batch's tasks.
COSTS_META: Final = "costs"
_CLOSE_S: Final = 15.0


def add_spend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("spend")
    g.add_argument(
        "--max-spend",
        default=None,
        metavar="USD",
        help="commit at most this much (the jobs' quotes, minus refunds); jobs that do not "
        "fit are held back, not submitted. With --share: for every batch of the account",
    )
    g.add_argument(
        "--budget-name",
        default=None,
        metavar="NAME",
        help="with --share, which account-wide budget --max-spend counts against "
        "(default: 'default'; it keeps counting across runs: use a new name for a new one)",
    )
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the batch would cost (per model, in total, against the balance) "
        "and submit nothing",
    )
    g.add_argument(
        "--ignore-balance",
        action="store_true",
        help="start even if the batch's quote exceeds the balance (it then stops when the "
        "money runs out)",
    )
    g.add_argument(
        "--reconcile",
        action="store_true",
        help="first look for the tasks of lines whose submit outcome is unknown in the "
        "account's history, and collect those found (before any --resubmit-unknown)",
    )


def check_spend_args(args: argparse.Namespace) -> None:
    """Parse ``--max-spend`` (into a Decimal) and check the spend options' combinations."""
    if args.max_spend is not None:
        try:
            args.max_spend = usd_amount(args.max_spend, "--max-spend")
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
    if args.budget_name is not None:
        if args.share is None or args.max_spend is None:
            raise UsageError("--budget-name: needs --share and --max-spend")
        from wavespeed_async.redis.budget import check_budget_name

        try:
            check_budget_name(args.budget_name)
        except ValidationError as exc:
            raise UsageError(f"--budget-name: {exc}") from None


def spend_limits(args: argparse.Namespace, limits: FlowLimits | None) -> FlowLimits | None:
    """The batch Client's limits, with ``--max-spend`` as its budget."""
    if args.max_spend is None:
        return limits
    base = limits or FlowLimits(max_in_flight=None, max_tasks_per_minute=None)
    return FlowLimits(
        max_in_flight=base.max_in_flight,
        max_tasks_per_minute=base.max_tasks_per_minute,
        max_polls_per_s=base.max_polls_per_s,
        max_connections=base.max_connections,
        budget_usd=args.max_spend,
    )


def spend_share(args: argparse.Namespace) -> str | Share | None:
    """``--share``, as a share that counts against ``--budget-name`` when one is given."""
    if args.share is None or args.budget_name is None:
        return args.share  # type: ignore[no-any-return]
    from wavespeed_async.redis import RedisShare

    try:
        return RedisShare(args.share, budget_name=args.budget_name)
    except ValidationError as exc:
        raise UsageError(f"--share: {exc}") from None


# -- quotes --------------------------------------------------------------------------------


async def quote_jobs(client: Client, jobs: Iterable[Job]) -> tuple[list[Quote], list[str]]:
    """The quotes of ``jobs`` (one request per input shape), and why a model could not be quoted.

    The jobs of a model that could not be quoted count for nothing.
    """
    quotes: list[Quote] = []
    problems: dict[str, str] = {}
    for job in jobs:
        model = job.model or ""
        if model in problems:
            continue
        try:
            quotes.append(await client.quote(model, inputs_as_sent(job)))
        except ValidationError as exc:
            problems.setdefault(model, f"line {job.line}: {exc}")
        except REFUSED:
            raise
        except WaveSpeedError as exc:
            problems[model] = f"{model}: cannot be quoted ({exc})"
    return quotes, list(problems.values())


def _table(quotes: list[Quote]) -> list[str]:
    jobs: dict[str, int] = {}
    totals: dict[str, Decimal] = {}
    for q in quotes:
        jobs[q.model] = jobs.get(q.model, 0) + 1
        totals[q.model] = totals.get(q.model, ZERO) + q.cost_usd
    width = max([len(m) for m in jobs] + [5])
    rows = [f"  {m:<{width}}  {jobs[m]:>6} job(s)  {format_usd(totals[m]):>10}" for m in jobs]
    total = sum(totals.values(), ZERO)
    rows.append(f"  {'total':<{width}}  {len(quotes):>6} job(s)  {format_usd(total):>10}")
    return rows


def _would_run(jobs: list[Job], args: argparse.Namespace, out: Path) -> tuple[list[Job], int]:
    """The jobs a run would submit, and how many finished or have a task already.

    They are read from an existing journal, never written.
    """
    valid = [j for j in jobs if j.error is None]
    path = out / "journal.sqlite3"
    if not path.is_file():
        return valid, 0
    with Journal.open(path) as journal:
        records = {r.line: r for r in journal.all()}
    again = {"pending", "invalid"}
    again |= {"failed"} if args.retry_failed else set()
    again |= {"unknown", "submitting"} if args.resubmit_unknown else set()
    todo = [
        j
        for j in valid
        if (rec := records.get(j.line)) is None or rec.hash != j.hash or rec.state in again
    ]
    return todo, len(valid) - len(todo)


def dry_run(args: argparse.Namespace, target: Target, jobs: list[Job]) -> int:
    """``batch --dry-run``: print the batch's quote against the balance; submit nothing."""
    todo, done = _would_run(jobs, args, Path(args.output))
    invalid = sum(1 for j in jobs if j.error is not None)

    async def go() -> tuple[list[Quote], list[str], Decimal]:
        async with open_client(target, timeout_s=None) as client:
            quotes, problems = await quote_jobs(client, todo)
            return quotes, problems, await client.balance()

    quotes, problems, balance = run_loop(go)
    total = sum((q.cost_usd for q in quotes), ZERO)
    print(
        f"Dry run of {args.jobs}: {len(todo)} job(s) to submit ({invalid} invalid, "
        f"{done} finished or with a task already). Nothing is submitted."
    )
    for line in _table(quotes):
        print(line)
    for problem in problems:
        print(f"  not quoted: {problem}")
    spend = total if args.max_spend is None else min(total, args.max_spend)
    if args.max_spend is not None and total > args.max_spend:
        print(f"--max-spend {format_usd(args.max_spend)}: jobs beyond it would be held back")
    verdict = (
        "enough"
        if spend <= balance
        else f"short by {format_usd(spend - balance)}: the batch would be refused unless "
        "--ignore-balance"
    )
    print(f"Balance: {format_usd(balance)} ({verdict})")
    return 0


async def preflight(client: Client, args: argparse.Namespace, jobs: list[Job]) -> None:
    """Refuse (UsageError, exit 2) a batch whose quote exceeds the balance.

    The quote counts up to ``--max-spend``; ``--ignore-balance`` lets the batch run anyway.
    Says which models could not be quoted.
    """
    if not jobs:
        return
    quotes, problems = await quote_jobs(client, jobs)
    for problem in problems:
        err(f"note: {problem}; its jobs are not in the quote")
    total = sum((q.cost_usd for q in quotes), ZERO)
    status = client.spend_status()
    if status.budget_usd is not None:
        total = min(total, max(ZERO, status.budget_usd - (status.committed_usd or ZERO)))
    if args.ignore_balance:
        return
    try:
        balance = await client.balance()
    except REFUSED:
        raise
    except WaveSpeedError as exc:  # the batch decides nothing on an answer it cannot read
        err(f"note: the balance could not be read ({exc}); the batch starts unchecked")
        return
    if total > balance:
        raise UsageError(
            f"the batch's quote is {format_usd(total)} and the balance is "
            f"{format_usd(balance)}: top up the account, lower --max-spend, or pass "
            "--ignore-balance to start anyway (the batch then stops when the money runs out); "
            "--dry-run shows the quote per model"
        )


async def before_run(
    client: Client,
    args: argparse.Namespace,
    journal: AsyncJournal,
    plan: Plan,
    counters: Counters,
    *,
    emulator: bool,
    fail: Callable[[BaseException], None],
) -> None:
    """What a batch does about money before it submits anything.

    Counts what its earlier runs cost against ``--max-spend``, checks the quote against the
    balance, and shows the budget in the progress. A refused key or account ends the batch
    (``fail``).
    """
    try:
        if not emulator:  # the emulator's earlier tasks ended with it, unbilled
            await count_earlier_spend(client, journal, {j.line for j in plan.jobs})
        await preflight(client, args, plan.to_submit)
    except REFUSED as exc:
        fail(exc)
        return
    if client.spend_status().budget_usd is not None:
        counters.spend = lambda: _spent_text(client)


def _spent_text(client: Client) -> str:
    status = client.spend_status()
    return f"{format_usd(status.committed_usd)} / {format_usd(status.budget_usd)} spent"


async def after_run(client: Client, journal: AsyncJournal, plan: Plan) -> None:
    """Keep the real cost of the batch's tasks (for the manifest and the gallery)."""
    lines = {j.line for j in plan.jobs}
    await record_costs(client, journal, [r for r in await journal.all() if r.line in lines])


async def count_earlier_spend(client: Client, journal: AsyncJournal, lines: set[int]) -> None:
    """Count what the batch's earlier runs cost against ``--max-spend``.

    Not with a share: the account-wide budget counts them already.
    """
    if client.spend_status().scope != "client":
        return
    records = [r for r in await journal.all() if r.line in lines and r.task_id is not None]
    if not records:
        return
    try:
        costs = await client.costs([r.task_id for r in records if r.task_id is not None])
    except REFUSED:
        raise
    except WaveSpeedError as exc:
        err(f"note: what earlier runs cost could not be read ({exc}); --max-spend counts this run")
        return
    earlier = sum((c.net_usd for c in costs.values()), ZERO)
    if earlier > 0:
        client._count_spent(earlier)
        err(f"note: earlier runs of this batch spent {format_usd(earlier)} of --max-spend")


# -- real costs ------------------------------------------------------------------------------


def cached_costs(journal: Journal) -> dict[str, Decimal]:
    """The costs kept in the journal's metadata (``{}`` when none)."""
    raw = journal.get_meta(COSTS_META)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        return {str(k): Decimal(str(v)) for k, v in data.items()}
    except (ValueError, ArithmeticError, AttributeError):
        return {}


async def record_costs(client: Client, journal: AsyncJournal, records: list[JobRecord]) -> None:
    """Read the cost of every task of the batch that has none yet, and keep it in the journal.

    Failed tasks are read again too, since their refund may have come since.
    """
    kept = await journal.call(cached_costs)
    wanted = [
        r.task_id
        for r in records
        if r.task_id is not None
        and (r.task_id not in kept or (r.state == "failed" and kept[r.task_id] > 0))
    ]
    if not wanted:
        return
    with anyio.move_on_after(_CLOSE_S):
        try:
            found = await client.costs(wanted)
        except WaveSpeedError as exc:
            err(f"note: the tasks' costs could not be read: {exc}")
            return
        for task_id, cost in found.items():
            if cost.known:
                kept[task_id] = cost.net_usd
        await journal.set_meta(COSTS_META, json.dumps({k: plain_usd(v) for k, v in kept.items()}))


def spend_summary(
    records: list[JobRecord], costs: Mapping[str, Decimal], args: argparse.Namespace
) -> list[str]:
    """The summary's lines about money: what the batch's tasks cost, and the budget."""
    known = [costs[r.task_id] for r in records if r.task_id is not None and r.task_id in costs]
    tasks = sum(1 for r in records if r.task_id is not None)
    lines = []
    if tasks:
        missing = f" ({tasks - len(known)} not billed yet)" if len(known) < tasks else ""
        lines.append(f"  cost:     {format_usd(sum(known, ZERO))} for {tasks} task(s){missing}")
    pending = [r for r in records if r.state == "pending" and r.error]
    held = [r.line for r in pending if (r.error or "").startswith("budget:")]
    if args.max_spend is not None:
        whose = " (the account's, with --share)" if args.share else ""
        lines.append(
            f"  budget:   {format_usd(sum(known, ZERO))} spent of --max-spend "
            f"{format_usd(args.max_spend)}{whose}"
        )
    if held and args.max_spend is not None:
        lines.append(
            f"            line(s) {lines_text(held)} held back by it: re-run with a higher "
            "--max-spend to submit them"
        )
    broke = [r.line for r in pending if (r.error or "").startswith("balance:")]
    if broke:
        lines.append(
            f"  balance:  line(s) {lines_text(broke)} refused for want of money (nothing was "
            "created): top up the account and re-run to submit them"
        )
    return lines


# -- reconcile -------------------------------------------------------------------------------


def reconcile_journal(args: argparse.Namespace, target: Target, journal: Journal, key: str) -> None:
    """``--reconcile``: give unknown lines the task the history shows for them, if any."""
    if target.emulator or journal.get_meta("target") == EMULATOR_TARGET:
        err("note: --reconcile: the emulator's tasks end with its process; nothing to look for")
        return
    previous = journal.get_meta("target")
    if previous is not None and previous != key:
        return  # the plan says how to reach that server
    records = journal.all()
    lost = [r for r in records if r.state in ("unknown", "submitting") and r.body and r.model]
    if not lost:
        return
    known = [r.task_id for r in records if r.task_id is not None]
    submits = [
        LostSubmit(r.model or "", dict(r.body or {}), r.submitted_at or time.time()) for r in lost
    ]

    async def go() -> list[str | None]:
        async with open_client(target, timeout_s=None) as client:
            found = await client.reconcile(submits, exclude=known)
        return [f.task_id for f in found]

    task_ids = run_loop(go)
    for rec, task_id in zip(lost, task_ids, strict=True):
        if task_id is None:
            err(f"line {rec.line}: no task found in the history: it stays unknown")
        else:
            journal.mark_created(rec.line, task_id)
            err(f"line {rec.line}: found its task {task_id} in the history: collecting it")
