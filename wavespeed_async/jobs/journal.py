"""A crash-safe journal of a batch's jobs: SQLite (standard library), WAL, one row per job.

The journal is what makes a batch resumable and what makes sure that no task id the
server returned is ever lost, whatever happens to the process (Ctrl-C, ``kill -9``, a
power cut)::

    with Journal.open("out/journal.sqlite3") as j:
        j.ensure(line=3, job_hash=h, model=m)      # a job known to the journal
        j.mark_submitting(3, body)                 # BEFORE the submit: the intent
        ...                                        # POST
        j.mark_created(3, task_id)                 # the moment the id exists
        ...                                        # poll, download
        j.mark_completed(3, ["line00003_..._0.png"], inference_ms=2400.0)

A job moves through ``pending -> submitting -> created -> completed | failed`` (the one
lifecycle of :mod:`wavespeed_async.jobs.lifecycle`, whose steps every write enforces); a
``submitting`` job whose answer was lost (or whose process died mid-submit) becomes
``unknown``: a billed task may or may not exist, so it is never re-submitted silently. A
submit answered in a way that proves no task was created (a 429, a 503 with
``Retry-After``, a connect failure) takes the job back to ``pending`` while it waits to be
sent again (:meth:`Journal.mark_not_sent`). Lines that cannot be run at all are
``invalid``.

Every write is its own transaction, committed before the call returns, with
``synchronous=FULL`` (WAL): once :meth:`Journal.mark_created` returns, the task id
survives ``kill -9`` and an operating-system crash. Calls inside :meth:`Journal.transaction`
share one commit (one fsync) instead, made when it ends. The calls are synchronous and
small (one row each), and safe from any thread (one at a time); an event loop makes them
through :class:`wavespeed_async.jobs.async_journal.AsyncJournal`, off the loop and
committed together.

A write that fails (``database or disk is full``, any SQLite or operating-system error)
raises :class:`JournalWriteError` naming the cause: a batch must stop there, since it
could no longer promise that a task id is kept.

The journal never stores credentials: only line numbers, content hashes, model paths,
request bodies, task ids, file names, errors and times.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from wavespeed_async._core.errors import LedgerError
from wavespeed_async.jobs import lifecycle
from wavespeed_async.jobs.lifecycle import JobState, check_step, sources_of, state_of_value
from wavespeed_async.jobs.sqlite import open_database

__all__ = ["STATES", "JobRecord", "Journal", "JournalError", "JournalWriteError"]

#: The journal's job states (see :mod:`wavespeed_async.jobs.lifecycle`), in order.
STATES: Final = tuple(s.value for s in JobState if s is not JobState.CLAIMED)

#: States in which a job is finished: a resumed batch skips it.
FINISHED: Final = frozenset(s.value for s in lifecycle.FINISHED)

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    line         INTEGER PRIMARY KEY,   -- 1-based line number in the jobs file
    hash         TEXT NOT NULL,         -- hash of the line's content (model + inputs)
    model        TEXT,
    state        TEXT NOT NULL,
    task_id      TEXT,
    body         TEXT,                  -- the JSON body as submitted (uploads resolved)
    outputs      TEXT,                  -- JSON list of file names, relative to the folder
    error        TEXT,
    code         INTEGER,
    inference_ms REAL,
    submitted_at REAL,                  -- unix seconds: the intent was recorded
    created_at   REAL,                  -- unix seconds: the task id was recorded
    finished_at  REAL,                  -- unix seconds: completed or failed
    attempts     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_task_id ON jobs(task_id);
"""

_COLUMNS: Final = (
    "line, hash, model, state, task_id, body, outputs, error, code, inference_ms, "
    "submitted_at, created_at, finished_at, attempts"
)


class JournalError(LedgerError):
    """The journal cannot be opened or used (not a journal, a newer schema, a bad state)."""


class JournalWriteError(JournalError):
    """A write to the journal failed (a full disk, a read-only file, too many open files).

    What was committed before stays; the write that failed did not happen.
    """


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the journal knows it."""

    line: int
    hash: str
    model: str | None
    state: str
    task_id: str | None
    body: dict[str, Any] | None
    outputs: list[str]
    error: str | None
    code: int | None
    inference_ms: float | None
    submitted_at: float | None
    created_at: float | None
    finished_at: float | None
    attempts: int

    @property
    def finished(self) -> bool:
        """Completed or failed: nothing left to do for this job."""
        return self.state in FINISHED


def _values(states: Iterable[JobState | None]) -> tuple[str, ...]:
    return tuple(sorted(s.value for s in states if s is not None))


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))


def _stored_json(text: str | None, line: int, column: str, path: Path | None) -> Any:
    """A JSON column of a row, or a JournalError naming the journal and the line."""
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        where = f"the journal {path}" if path is not None else "the journal"
        raise JournalError(
            f"{where} is damaged: line {line}'s stored {column} is not JSON; restore the "
            "file, or use a new -o DIR (its tasks are then not collected)",
            location=str(path or ""),
        ) from None


def _record(row: tuple[Any, ...], path: Path | None = None) -> JobRecord:
    (line, job_hash, model, state, task_id, body, outputs, error, code, inference_ms,
     submitted_at, created_at, finished_at, attempts) = row  # fmt: skip
    return JobRecord(
        line=line,
        hash=job_hash,
        model=model,
        state=state,
        task_id=task_id,
        body=_stored_json(body, line, "request", path),
        outputs=_stored_json(outputs, line, "outputs", path) or [],
        error=error,
        code=code,
        inference_ms=inference_ms,
        submitted_at=submitted_at,
        created_at=created_at,
        finished_at=finished_at,
        attempts=attempts,
    )


class Journal:
    """The jobs of one batch, in a SQLite file. Open with :meth:`open`; close when done.

    Args:
        conn: An open connection (use :meth:`open`, which sets it up).
        clock: Unix seconds, for the recorded times.
    """

    def __init__(
        self, conn: sqlite3.Connection, *, clock: Any = time.time, path: Path | None = None
    ) -> None:
        self._conn = conn
        self._clock = clock
        self.path = path
        # One thread at a time, a transaction included (reentrant: calls inside it).
        self._lock = threading.RLock()

    @property
    def location(self) -> str:
        """The journal's file."""
        return str(self.path or "")

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        """Open (or create) the journal at ``path``, in WAL mode with full durability.

        Raises:
            JournalError: the file is not a journal, or was written by a newer version.
        """
        try:
            conn = open_database(path, _SCHEMA, SCHEMA_VERSION, what="journal", threads=True)
        except LedgerError as exc:
            raise JournalError(str(exc), location=exc.location) from None
        return cls(conn, path=Path(path))

    def close(self) -> None:
        """Close the file. Everything was committed already."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- metadata --------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- reading ---------------------------------------------------------------------

    def get(self, line: int) -> JobRecord | None:
        """The job on ``line``, or ``None`` if the journal has never seen it."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE line = ?",  # noqa: S608 - constant columns
                (line,),
            ).fetchone()
        return None if row is None else _record(row, self.path)

    def state_of(self, line: int) -> JobState | None:
        """The state of the job on ``line`` (``None``: the journal has never seen it)."""
        rec = self.get(line)
        if rec is None:
            return None
        return state_of_value(rec.state, what=f"line {line}", location=self.location)

    def all(self) -> list[JobRecord]:
        """Every job, in line order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY line"  # noqa: S608 - constant columns
            ).fetchall()
        return [_record(r, self.path) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    # -- writing ---------------------------------------------------------------------

    def ensure(self, line: int, job_hash: str, model: str | None) -> JobRecord:
        """Make the journal know the job on ``line`` (``pending`` when new); return it.

        Raises:
            JournalError: the journal has another job on this line (the file was edited):
                call :meth:`forget` first if that is intended.
        """
        self._write(
            "INSERT INTO jobs(line, hash, model, state) VALUES (?, ?, ?, 'pending') "
            "ON CONFLICT(line) DO NOTHING",
            (line, job_hash, model),
        )
        rec = self.get(line)
        if rec is None or rec.hash != job_hash:
            raise JournalError(f"line {line}: the journal holds a different job on this line")
        return rec

    def forget(self, lines: Iterable[int]) -> None:
        """Drop the jobs on ``lines`` (an edited file: the old jobs are no longer wanted)."""
        with self._writing():
            self._conn.executemany("DELETE FROM jobs WHERE line = ?", [(n,) for n in lines])

    def mark_invalid(self, line: int, job_hash: str, error: str) -> None:
        """A line that cannot run (bad JSON, bad input): no task, nothing sent.

        Raises:
            JournalError: the line's job was sent (it may have a task): it is kept.
        """
        allowed = _values(sources_of(JobState.INVALID))
        sql = (
            "INSERT INTO jobs(line, hash, state, error) VALUES (?, ?, 'invalid', ?) "  # noqa: S608
            "ON CONFLICT(line) DO UPDATE SET hash = excluded.hash, model = NULL, "
            "state = 'invalid', task_id = NULL, body = NULL, outputs = NULL, "
            "error = excluded.error, code = NULL, inference_ms = NULL, "
            "submitted_at = NULL, created_at = NULL, finished_at = NULL "
            f"WHERE jobs.state IN ({_marks(allowed)})"  # constant SQL
        )
        cur = self._write(sql, (line, job_hash, error, *allowed))
        if cur.rowcount != 1:
            self._refuse(line, JobState.INVALID)

    def mark_submitting(
        self,
        line: int,
        body: Mapping[str, Any] | None = None,
        model: str | None = None,
        *,
        owner: str = "",
    ) -> bool:
        """Record the intent to submit, BEFORE each send of the request.

        ``body``: what is sent; kept from the previous send when ``None``.

        A job left in this state by a dead process has an unknown outcome.
        """
        text = None if body is None else json.dumps(dict(body), separators=(",", ":"))
        self._step(
            line,
            JobState.SUBMITTING,
            "state = 'submitting', task_id = NULL, body = COALESCE(?, body), "
            "model = COALESCE(?, model), outputs = NULL, error = NULL, code = NULL, "
            "inference_ms = NULL, submitted_at = ?, created_at = NULL, finished_at = NULL, "
            "attempts = attempts + 1",
            (text, model, self._clock()),
        )
        return True

    def mark_not_sent(self, line: int, *, owner: str = "") -> bool:
        """The submit was answered in a way that proves no task was created: ``pending`` again.

        Such an answer is a 429, a 503 with ``Retry-After``, or a connect failure; the job
        waits to be sent again. ``False`` if the job was not ``submitting``.
        """
        cur = self._write(
            "UPDATE jobs SET state = 'pending', submitted_at = NULL "
            "WHERE line = ? AND state = 'submitting' AND task_id IS NULL",
            (line,),
        )
        return cur.rowcount == 1

    def mark_created(self, line: int, task_id: str) -> None:
        """Record the task id; durable (fsync'ed) when this returns."""
        if not task_id:
            raise JournalError(f"line {line}: empty task id")
        self._step(
            line,
            JobState.CREATED,
            "state = 'created', task_id = ?, error = NULL, created_at = ?",
            (task_id, self._clock()),
            task_id=task_id,
        )

    def note_error(self, line: int, error: str) -> None:
        """Keep the state, remember why the job did not finish (e.g. a failed download)."""
        self._update(line, "error = ?", (error,))

    def mark_completed(
        self, line: int, outputs: list[str], *, inference_ms: float | None = None
    ) -> None:
        """The task completed and its outputs are saved (``outputs``: file names)."""
        self._step(
            line,
            JobState.COMPLETED,
            "state = 'completed', outputs = ?, error = NULL, code = NULL, inference_ms = ?, "
            "finished_at = ?",
            (json.dumps(outputs), inference_ms, self._clock()),
        )

    def mark_failed(
        self,
        line: int,
        error: str,
        *,
        task_id: str | None = None,
        code: int | None = None,
        inference_ms: float | None = None,
    ) -> None:
        """The job ended without outputs: a failed task, or a submit that was refused."""
        self._step(
            line,
            JobState.FAILED,
            "state = 'failed', task_id = COALESCE(?, task_id), error = ?, code = ?, "
            "inference_ms = ?, finished_at = ?",
            (task_id, error, code, inference_ms, self._clock()),
        )

    def mark_finished(
        self,
        line: int,
        state: JobState,
        *,
        task_id: str | None = None,
        outputs: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        """The job ended: ``completed`` (``outputs``: file names) or ``failed``."""
        if state is JobState.COMPLETED:
            self.mark_completed(line, list(outputs))
        elif state is JobState.FAILED:
            self.mark_failed(line, error or "failed", task_id=task_id)
        else:
            raise JournalError(f"line {line}: {state} is not an end", location=self.location)

    def mark_unknown(self, line: int, error: str) -> None:
        """A submit whose answer was lost: a task may exist. Never re-sent silently."""
        self._step(line, JobState.UNKNOWN, "state = 'unknown', error = ?", (error,))

    def reset(self, line: int) -> None:
        """Make a job ``pending`` again, to re-submit it; its old task id is dropped.

        The user's decision (``--retry-failed``, ``--resubmit-unknown``), not a lifecycle step.
        """
        self._update(
            line,
            "state = 'pending', task_id = NULL, outputs = NULL, error = NULL, code = NULL, "
            "inference_ms = NULL, submitted_at = NULL, created_at = NULL, finished_at = NULL",
            (),
        )

    def submitting_to_unknown(self, error: str) -> list[int]:
        """Turn every ``submitting`` job into ``unknown``; return their lines."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT line FROM jobs WHERE state = 'submitting' ORDER BY line"
            ).fetchall()
            lines = [int(r[0]) for r in rows]
            if lines:
                self._write(
                    "UPDATE jobs SET state = 'unknown', error = ? WHERE state = 'submitting'",
                    (error,),
                )
        return lines

    def _step(
        self,
        line: int,
        new: JobState,
        assignments: str,
        params: tuple[Any, ...],
        *,
        task_id: str | None = None,
    ) -> None:
        """One step of the lifecycle to ``new``: only from a state it is allowed from."""
        allowed = _values(sources_of(new))
        cur = self._write(
            f"UPDATE jobs SET {assignments} WHERE line = ? "  # noqa: S608 - constant SQL
            f"AND state IN ({_marks(allowed)})",
            (*params, line, *allowed),
        )
        if cur.rowcount != 1:
            self._refuse(line, new, task_id=task_id)

    def _refuse(self, line: int, new: JobState, *, task_id: str | None = None) -> None:
        """Why a step did not happen, as a JournalError."""
        old = self.state_of(line)
        if old is None:
            raise JournalError(f"line {line}: not in the journal", location=self.location)
        check_step(
            old,
            new,
            what=f"journal {self.location}: line {line}",
            location=self.location,
            error=JournalError,
            task_id=task_id,
        )
        raise JournalError(  # pragma: no cover - the row changed under this connection
            f"line {line}: the step to {new} did not happen", location=self.location
        )

    def _update(self, line: int, assignments: str, params: tuple[Any, ...]) -> None:
        cur = self._write(
            f"UPDATE jobs SET {assignments} WHERE line = ?",  # noqa: S608 - constant SQL
            (*params, line),
        )
        if cur.rowcount != 1:
            raise JournalError(f"line {line}: not in the journal")

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Run one write (its own transaction)."""
        with self._writing():
            return self._conn.execute(sql, params)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn any failure of the writes inside into a JournalWriteError naming it."""
        try:
            with self._lock:
                yield
        except (sqlite3.Error, OSError) as exc:
            raise self.write_error(exc) from exc

    def write_error(self, cause: BaseException) -> JournalWriteError:
        """A JournalWriteError naming the journal and ``cause``."""
        where = f" {self.path}" if self.path is not None else ""
        return JournalWriteError(
            f"cannot write the journal{where}: {cause}", location=str(self.path or "")
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the calls inside one transaction: one commit (one fsync) when it ends.

        This thread holds the journal meanwhile. If the block raises, or the commit fails,
        none of its writes happen (a failed commit raises :class:`JournalWriteError`).
        """
        with self._lock:
            with self._writing():
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                with self._writing():
                    self._conn.execute("COMMIT")
            finally:
                if self._conn.in_transaction:  # raised, or the commit failed
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: undo the writes of the block if it raises."""
        with self._writing():
            self._conn.execute("SAVEPOINT one")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # not when SQLite rolled it all back already
                with self._writing():
                    self._conn.execute("ROLLBACK TO one")
                    self._conn.execute("RELEASE one")
            raise
        with self._writing():
            self._conn.execute("RELEASE one")
