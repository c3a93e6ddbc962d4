"""One job lifecycle: the table of steps, enforced by the journal and the SQLite ledger.

The Redis ledger's are in ``tests/ray/test_ledger.py``. Damage is a LedgerError.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from wavespeed_async import LedgerError
from wavespeed_async.jobs.journal import Journal, JournalError
from wavespeed_async.jobs.ledger import SqliteLedger
from wavespeed_async.jobs.lifecycle import (
    STEPS,
    JobState,
    JobStore,
    check_step,
    sources_of,
)


def test_every_state_has_its_steps_and_nothing_leaves_unknown_but_a_user_s_decision() -> None:
    assert set(STEPS) == {None, *JobState}
    assert STEPS[JobState.UNKNOWN] == frozenset()  # only --resubmit-unknown (a reset)
    assert sources_of(JobState.CREATED) == {JobState.SUBMITTING, JobState.CREATED}
    # Back to re-sendable only from submitting: a refusal proved no task exists.
    assert sources_of(JobState.PENDING) == {None, JobState.SUBMITTING}
    assert sources_of(JobState.CLAIMED) == {None, JobState.CLAIMED, JobState.SUBMITTING}
    with pytest.raises(LedgerError, match="row 'k': cannot go from completed to created"):
        check_step(JobState.COMPLETED, JobState.CREATED, what="row 'k'")


def test_the_journal_and_the_sqlite_ledger_are_job_stores(tmp_path: Path) -> None:
    stores: list[JobStore[int] | JobStore[str]] = []
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        stores.append(journal)
        ledger = SqliteLedger.open(tmp_path)
        try:
            stores.append(ledger)
            assert all(isinstance(s.location, str) and s.location for s in stores)
        finally:
            ledger.close()


def test_the_journal_refuses_a_step_the_lifecycle_does_not_allow(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        j.ensure(1, "h1", "m")
        with pytest.raises(JournalError, match="line 1: cannot go from pending to completed"):
            j.mark_completed(1, ["a.png"])
        with pytest.raises(JournalError, match="cannot go from pending to created") as info:
            j.mark_created(1, "t1")
        assert isinstance(info.value, LedgerError) and info.value.task_id == "t1"
        j.mark_submitting(1, {"prompt": "p"})
        j.mark_unknown(1, "lost")
        with pytest.raises(JournalError, match="cannot go from unknown to created"):
            j.mark_created(1, "t1")
        with pytest.raises(JournalError, match="cannot go from unknown to submitting"):
            j.mark_submitting(1)
        assert j.state_of(1) is JobState.UNKNOWN
        with pytest.raises(JournalError, match="line 2: not in the journal"):
            j.mark_submitting(2)


def test_a_refused_submit_takes_a_journal_job_back_to_pending_and_the_resend_keeps_its_body(
    tmp_path: Path,
) -> None:
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        j.ensure(1, "h1", "m")
        assert j.mark_submitting(1, {"prompt": "p"}, "m")
        assert j.mark_not_sent(1)
        rec = j.get(1)
        assert rec is not None and (rec.state, rec.submitted_at) == ("pending", None)
        assert not j.mark_not_sent(1)  # not submitting any more
        j.mark_submitting(1)  # the re-send: the body is kept
        j.mark_created(1, "t1")
        rec = j.get(1)
        assert rec is not None and rec.body == {"prompt": "p"} and rec.attempts == 2
        assert not j.mark_not_sent(1)  # a task exists: never re-sendable
        j.mark_finished(1, JobState.COMPLETED, outputs=["a.png"])
        assert j.state_of(1) is JobState.COMPLETED


def test_the_sqlite_ledger_refuses_a_step_and_names_the_task_it_could_not_record(
    tmp_path: Path,
) -> None:
    book = SqliteLedger.open(tmp_path)
    try:
        book.claim("k", "a")
        with pytest.raises(LedgerError, match="row 'k': cannot go from claimed to created") as info:
            book.mark_created("k", "t1")
        assert info.value.task_id == "t1" and info.value.location == str(tmp_path)
        with pytest.raises(LedgerError, match="row 'gone': cannot go from no entry to created"):
            book.mark_created("gone", "t2")
        assert book.mark_submitting("k", owner="a")
        assert book.mark_not_sent("k", owner="a")  # refused: claimed again, by a
        entry = book.get("k")
        assert entry is not None and (entry.state, entry.owner) == ("claimed", "a")
        assert book.mark_submitting("k", owner="a")
        book.mark_created("k", "t1")
        assert not book.mark_not_sent("k", owner="a")
        book.mark_finished("k", JobState.COMPLETED, outputs=["u"])
        with pytest.raises(LedgerError, match="cannot go from completed to unknown"):
            book.mark_unknown("k", "no")
        assert book.state_of("k") is JobState.COMPLETED
    finally:
        book.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [("outputs", "{not json"), ("outputs", "[1, 2]"), ("state", "exploded")],
)
def test_a_damaged_sqlite_ledger_row_is_a_ledger_error_naming_the_row(
    tmp_path: Path, column: str, value: str
) -> None:
    book = SqliteLedger.open(tmp_path)
    try:
        book.claim("k", "a")
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as raw:
            raw.execute(f"UPDATE ledger SET {column} = ? WHERE key = 'k'", (value,))  # noqa: S608
        with pytest.raises(LedgerError, match=r"row 'k'") as info:
            book.get("k")
        assert info.value.location == str(tmp_path)
    finally:
        book.close()


def test_workers_opening_a_new_sqlite_ledger_at_once_all_open_it(tmp_path: Path) -> None:
    """Workers of one machine that open a new ledger file at the same moment all get it."""
    for round_ in range(30):  # each round a new file: the race is in creating it
        folder = tmp_path / f"ledger-{round_}"
        start = threading.Barrier(8)
        problems: list[BaseException] = []

        def open_it(
            folder: Path = folder,
            start: threading.Barrier = start,
            problems: list[BaseException] = problems,
        ) -> None:
            start.wait()
            try:
                SqliteLedger.open(folder).close()
            except BaseException as exc:
                problems.append(exc)

        workers = [threading.Thread(target=open_it) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert problems == [], f"round {round_}"
        with sqlite3.connect(folder / "ledger.sqlite3") as conn:
            rows = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchall()
        assert rows == [("2",)]
