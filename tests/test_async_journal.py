"""The journal's calls off the event loop: in order, durable on return, grouped, failing loud.

"Durable" is checked through a second connection to the file: in WAL mode it sees only
what was committed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from wavespeed_async.jobs.async_journal import AsyncJournal
from wavespeed_async.jobs.journal import Journal, JournalError, JournalWriteError

pytestmark = pytest.mark.anyio

MODEL = "wavespeed-ai/flux-dev"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        for line in range(1, 11):
            j.ensure(line, f"h{line}", MODEL)
        yield j


def committed(journal: Journal) -> dict[int, tuple[str, str | None]]:
    """``line -> (state, task_id)`` as another process would read it now."""
    conn = sqlite3.connect(journal.location)
    try:
        rows = conn.execute("SELECT line, state, task_id FROM jobs").fetchall()
    finally:
        conn.close()
    return {int(line): (str(state), task_id) for line, state, task_id in rows}


class Gate:
    """Holds the worker thread inside a call until the test opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def hold(self, journal: Journal) -> None:
        self.entered.set()
        # A guard only: the test opens it long before; a call run on the event loop
        # would never let the test get there, and this gives up instead of hanging.
        assert self.opened.wait(10), "the gate was never opened"


async def test_a_call_is_committed_when_it_returns(journal: Journal) -> None:
    aj = AsyncJournal(journal)
    await aj.mark_submitting(1, {"prompt": "x"})
    assert committed(journal)[1] == ("submitting", None)
    await aj.mark_created(1, "t1")
    assert committed(journal)[1] == ("created", "t1")


async def test_a_call_runs_in_a_worker_thread_while_the_loop_goes_on(journal: Journal) -> None:
    aj = AsyncJournal(journal)
    gate = Gate()
    loop_thread = threading.get_ident()
    ran_in: list[int] = []

    def held(j: Journal) -> None:
        ran_in.append(threading.get_ident())
        gate.hold(j)

    async with anyio.create_task_group() as tg:
        tg.start_soon(aj.call, held)
        # The loop still runs other tasks while the call is in its thread.
        await anyio.to_thread.run_sync(gate.entered.wait)
        gate.opened.set()
    assert ran_in and ran_in[0] != loop_thread


async def test_calls_arriving_during_a_commit_share_the_next_one_in_order(
    journal: Journal,
) -> None:
    aj = AsyncJournal(journal)
    gate = Gate()
    seen: list[tuple[int, dict[int, tuple[str, str | None]]]] = []

    async def submit_and_create(line: int) -> None:
        # Each caller returns only once its own write is durable.
        await aj.mark_submitting(line, {"prompt": str(line)})
        seen.append((aj.commits, committed(journal)))
        await aj.mark_created(line, f"t{line}")
        assert committed(journal)[line] == ("created", f"t{line}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(aj.call, gate.hold)
        await anyio.to_thread.run_sync(gate.entered.wait)
        for line in range(1, 9):
            tg.start_soon(submit_and_create, line)
        await anyio.wait_all_tasks_blocked()
        gate.opened.set()
    # One commit held by the gate, then the eight intents together in the next one.
    commits, state = seen[0]
    assert commits == 2
    assert all(state[line] == ("submitting", None) for line in range(1, 9))
    assert aj.calls == 17
    assert aj.commits < aj.calls
    assert committed(journal) == {
        **{line: ("created", f"t{line}") for line in range(1, 9)},
        9: ("pending", None),
        10: ("pending", None),
    }


async def test_a_refused_call_fails_alone_and_its_neighbours_are_committed(
    journal: Journal,
) -> None:
    aj = AsyncJournal(journal)
    gate = Gate()
    outcomes: dict[str, BaseException | None] = {}

    async def run(name: str, fn: object) -> None:
        try:
            await aj.call(fn)  # type: ignore[arg-type]
        except JournalError as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    async with anyio.create_task_group() as tg:
        tg.start_soon(aj.call, gate.hold)
        await anyio.to_thread.run_sync(gate.entered.wait)
        tg.start_soon(run, "intent", lambda j: j.mark_submitting(1, {"p": 1}))
        await anyio.wait_all_tasks_blocked()
        # Line 2 was never submitting: the lifecycle refuses a task id for it.
        tg.start_soon(run, "refused", lambda j: j.mark_created(2, "t2"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(run, "id", lambda j: j.mark_created(1, "t1"))
        await anyio.wait_all_tasks_blocked()
        gate.opened.set()
    assert outcomes["intent"] is None and outcomes["id"] is None
    assert isinstance(outcomes["refused"], JournalError)
    assert not isinstance(outcomes["refused"], JournalWriteError)
    assert "line 2" in str(outcomes["refused"])
    state = committed(journal)
    assert state[1] == ("created", "t1")
    assert state[2] == ("pending", None)
    assert aj.commits == 2


async def test_a_failed_commit_raises_a_write_error_from_every_call_it_held(
    journal: Journal,
) -> None:
    aj = AsyncJournal(journal)
    await aj.mark_submitting(1, {"prompt": "x"})
    await aj.mark_created(1, "a" * 32)
    # SQLite's own page cap: the next pages cannot be allocated, as on a full disk.
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages}")
    gate = Gate()
    errors: list[BaseException] = []

    async def big_intent(line: int) -> None:
        try:
            await aj.mark_submitting(line, {"prompt": "y" * 200_000})
        except JournalWriteError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(aj.call, gate.hold)
        await anyio.to_thread.run_sync(gate.entered.wait)
        for line in (2, 3, 4):
            tg.start_soon(big_intent, line)
        await anyio.wait_all_tasks_blocked()
        gate.opened.set()
    assert len(errors) == 3
    assert len({id(e) for e in errors}) == 3  # each caller its own exception
    for exc in errors:
        assert "database or disk is full" in str(exc)
        assert journal.location in str(exc)
    # None of the group happened; what was committed before stays.
    state = committed(journal)
    assert state[1] == ("created", "a" * 32)
    assert {state[n] for n in (2, 3, 4)} == {("pending", None)}


async def test_a_call_whose_caller_is_cancelled_still_commits_and_returns(
    journal: Journal,
) -> None:
    aj = AsyncJournal(journal)
    gate = Gate()
    after: list[str] = []

    def held_then_created(j: Journal) -> None:
        gate.hold(j)
        j.mark_created(1, "t1")

    async def created() -> None:
        await aj.call(held_then_created)
        after.append("returned")  # the call's outcome is the caller's to act on
        await anyio.lowlevel.checkpoint()
        after.append("went on")  # never: the cancellation comes at the next checkpoint

    await aj.mark_submitting(1, {"prompt": "x"})
    async with anyio.create_task_group() as tg:
        tg.start_soon(created)
        await anyio.to_thread.run_sync(gate.entered.wait)
        tg.cancel_scope.cancel()
        assert committed(journal)[1] == ("submitting", None)
        gate.opened.set()
    assert after == ["returned"]
    assert committed(journal)[1] == ("created", "t1")
    # Nothing is left running: the journal is free for this thread at once.
    journal.note_error(1, "checked")
    assert journal.get(1) is not None


async def test_the_journal_refuses_a_second_thread_while_a_commit_holds_it(
    journal: Journal,
) -> None:
    aj = AsyncJournal(journal)
    gate = Gate()
    order: list[str] = []

    def direct() -> None:
        gate.entered.wait()
        journal.note_error(2, "direct")  # waits for the commit, never interleaves
        order.append("direct")

    def held(j: Journal) -> None:
        gate.hold(j)
        j.note_error(1, "grouped")
        order.append("grouped")

    async with anyio.create_task_group() as tg:
        tg.start_soon(aj.call, held)
        tg.start_soon(anyio.to_thread.run_sync, direct)
        await anyio.to_thread.run_sync(gate.entered.wait)
        gate.opened.set()
    assert order == ["grouped", "direct"]
