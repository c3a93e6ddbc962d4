"""The ledger: which task each row of a pipeline became, kept outside the workers.

A row key moves through ``claimed -> submitting -> created -> completed | failed`` (see
:mod:`wavespeed_async.jobs.lifecycle`, whose steps every ledger enforces, and
:mod:`wavespeed_async.jobs.entry` for what an entry records):

* ``claimed`` (owner, ``claimed_at``): a worker took the row and waits for its turn to send
  it (the Client's in-flight cap, start window, 429 cool-down). Nothing was sent, so another
  worker may **take it over** (:meth:`Ledger.take_over`, a compare-and-set on the owner and
  the claim time) and send it itself.
* ``submitting``: the owner moved its claim here (:meth:`~JobStore.mark_submitting`, a
  compare-and-set that succeeds only while the row is still ``claimed`` by that owner) just
  before each send of the request. Only that owner sends it, so a row's submit is sent at
  most once at a time, whoever took the row over when; a ``submitting`` row is never taken
  over. An answer that proves no task was created (a 429, a 503 with ``Retry-After``, a
  connect failure) moves it back to ``claimed`` (:meth:`~JobStore.mark_not_sent`) while it
  waits to be sent again: a worker that dies then leaves it to be taken over and sent.

A submit refused before any task existed, and a claim whose batch ended before its turn,
are released (the key is deleted), so a later run sends the row.

Owner ids name the host and the process (:func:`new_owner`), so a worker can tell that the
owner of a claim on its own host has died (:func:`owner_gone`). That only decides *when* a
claim is taken over; the compare-and-set keeps it safe either way.

Two stores obey one small interface (:class:`Ledger`):

* :class:`SqliteLedger`: a folder on one machine (``<folder>/ledger.sqlite3``, WAL), shared
  by every worker process of that machine;
* :class:`~wavespeed_async.redis.ledger.RedisLedger`: a Redis URL, one hash per namespace,
  shared by every machine; each change is a compare-and-set in a Lua script, atomic across
  processes.

The calls are synchronous and small (a statement or a round trip or two), and safe from
any thread: a worker makes them in a worker thread, so that a store that waits (a locked
SQLite file, a slow server) never stops its event loop. The ledger stores keys, task ids,
output URLs, errors and the hashes of :class:`Stamp`, never credentials. A store that
cannot be read or written, or is damaged, raises :class:`LedgerError`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from wavespeed_async._core import registry
from wavespeed_async._core.errors import LedgerError
from wavespeed_async._core.secret import masked
from wavespeed_async.jobs.entry import (
    DEFAULT_NAMESPACE,
    Entry,
    Ledger,
    Stamp,
    account_namespace,
    failing,
    new_owner,
    owner_gone,
)
from wavespeed_async.jobs.lifecycle import JobState, check_step, sources_of, state_of_value
from wavespeed_async.jobs.sqlite import open_database

__all__ = [
    "DEFAULT_NAMESPACE",
    "Entry",
    "Ledger",
    "SqliteLedger",
    "Stamp",
    "is_url",
    "new_owner",
    "open_ledger",
    "owner_gone",
]

#: The ledger's key states (see :mod:`wavespeed_async.jobs.lifecycle`). ``completed`` and
#: ``failed`` are final; ``created`` is polled again.
STATES: Final = tuple(s.value for s in JobState if s not in (JobState.PENDING, JobState.INVALID))

SCHEMA_VERSION: Final = 2

# No CHECK on ``state``: a ledger of the first version opens as is (and gains the columns
# of the stamp, empty in its rows: they are unverified).
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    key        TEXT PRIMARY KEY,   -- the row key
    state      TEXT NOT NULL,
    task_id    TEXT,
    outputs    TEXT,               -- JSON list of the task's outputs (URLs)
    error      TEXT,
    owner      TEXT,               -- which worker claimed the key
    claimed_at REAL NOT NULL,      -- unix seconds: when the owner claimed (or took over) it
    updated_at REAL NOT NULL,
    model      TEXT,               -- what the row is the task of (NULL: an earlier version's)
    input_hash TEXT,
    account    TEXT,
    proof      TEXT                -- a final row's tag (see docs/ray.md)
);
"""

_ADDED_COLUMNS: Final = ("model", "input_hash", "account", "proof")
_COLUMNS: Final = (
    "state, task_id, outputs, error, owner, claimed_at, updated_at, model, input_hash, account, "
    "proof"
)
_encode = msgspec.json.Encoder().encode
_outputs_decoder = msgspec.json.Decoder(list[str])


def _values(states: frozenset[JobState | None]) -> tuple[str, ...]:
    return tuple(sorted(s.value for s in states if s is not None))


def _migrate(conn: sqlite3.Connection) -> None:
    """Add what a ledger of an earlier version lacks (its rows stay unverified)."""
    have = {str(row[1]) for row in conn.execute("PRAGMA table_info(ledger)")}
    for column in _ADDED_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE ledger ADD COLUMN {column} TEXT")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


class SqliteLedger:
    """A ledger in ``<folder>/ledger.sqlite3`` for the workers of one machine.

    Safe to use from several threads: one statement at a time.
    """

    def __init__(self, conn: sqlite3.Connection, location: str = "") -> None:
        self.conn = conn
        self._location = location
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SqliteLedger {self._location!r}>"

    @property
    def location(self) -> str:
        return self._location

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SqliteLedger:
        location = os.fspath(folder)
        with failing(location, "open it", (LedgerError, OSError, sqlite3.Error)):
            conn = open_database(
                Path(folder) / "ledger.sqlite3", _SCHEMA, SCHEMA_VERSION, threads=True
            )
            try:
                _migrate(conn)
                # NORMAL in WAL mode: a committed write survives the death of any process
                # (what a worker's death is); only an OS crash may lose the last writes.
                conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                conn.close()
                raise
        return cls(conn, location)

    def _run(self, what: str, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with failing(self._location, what, (sqlite3.Error,)), self._lock:
            return self.conn.execute(sql, params)

    def _one(self, what: str, sql: str, params: tuple[Any, ...]) -> Any:
        with failing(self._location, what, (sqlite3.Error,)), self._lock:
            return self.conn.execute(sql, params).fetchone()

    def claim(self, key: str, owner: str, stamp: Stamp | None = None) -> Entry | None:
        now = time.time()
        cur = self._run(
            "claim a row",
            "INSERT INTO ledger(key, state, owner, claimed_at, updated_at, model, input_hash, "
            "account) VALUES (?, 'claimed', ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, owner, now, now, *(stamp or (None, None, None))),
        )
        if cur.rowcount == 1:
            return None
        return self.get(key)

    def take_over(self, key: str, owner: str, seen: Entry, stamp: Stamp | None = None) -> bool:
        now = time.time()
        cur = self._run(
            "take over a claim",
            "UPDATE ledger SET owner = ?, claimed_at = ?, updated_at = ?, "
            "model = COALESCE(?, model), input_hash = COALESCE(?, input_hash), "
            "account = COALESCE(?, account) "
            "WHERE key = ? AND state = 'claimed' AND owner IS ? AND claimed_at = ?",
            (owner, now, now, *(stamp or (None, None, None)), key, seen.owner, seen.claimed_at),
        )
        return cur.rowcount == 1

    def mark_submitting(self, key: str, *, owner: str = "") -> bool:
        cur = self._run(
            "record a submit",
            "UPDATE ledger SET state = 'submitting', updated_at = ? "
            "WHERE key = ? AND state = 'claimed' AND owner = ?",
            (time.time(), key, owner),
        )
        return cur.rowcount == 1

    def mark_not_sent(self, key: str, *, owner: str = "") -> bool:
        now = time.time()
        cur = self._run(
            "record a submit that created nothing",
            "UPDATE ledger SET state = 'claimed', claimed_at = ?, updated_at = ? "
            "WHERE key = ? AND state = 'submitting' AND owner = ? AND task_id IS NULL",
            (now, now, key, owner),
        )
        return cur.rowcount == 1

    def get(self, key: str) -> Entry | None:
        row = self._one(
            "read a row",
            f"SELECT {_COLUMNS} FROM ledger WHERE key = ?",  # noqa: S608 - constant columns
            (key,),
        )
        if row is None:
            return None
        state, task_id, outputs, error, owner, claimed_at, updated_at, *stamp = row
        what = f"ledger {self._location}: row {key!r}"
        state_of_value(state, what=what, location=self._location)
        try:
            decoded = _outputs_decoder.decode(outputs) if outputs else []
            entry = Entry(
                state=state,
                task_id=task_id,
                outputs=decoded,
                error=error,
                owner=owner,
                claimed_at=float(claimed_at),
                changed_at=float(updated_at),
                model=stamp[0],
                input_hash=stamp[1],
                account=stamp[2],
                proof=stamp[3],
            )
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
            raise LedgerError(
                f"{what} is damaged ({type(exc).__name__}: {str(exc)[:200]})",
                location=self._location,
            ) from None
        return entry

    def state_of(self, key: str) -> JobState | None:
        entry = self.get(key)
        return None if entry is None else entry.job_state

    def mark_created(self, key: str, task_id: str) -> None:
        self._step(key, JobState.CREATED, task_id, "task_id = ?, error = NULL", (task_id,))

    def mark_finished(
        self,
        key: str,
        state: JobState,
        *,
        task_id: str | None = None,
        outputs: Sequence[str] = (),
        error: str | None = None,
        proof: str | None = None,
    ) -> None:
        self._step(
            key,
            state,
            task_id,
            "task_id = COALESCE(?, task_id), outputs = ?, error = ?, proof = ?",
            (task_id, _encode(list(outputs)).decode(), error, proof),
        )

    def mark_unknown(self, key: str, error: str) -> None:
        self._step(key, JobState.UNKNOWN, None, "error = ?", (error,))

    def release(self, key: str, owner: str) -> None:
        self._run(
            "release a claim",
            "DELETE FROM ledger WHERE key = ? AND owner = ? "
            "AND state IN ('claimed', 'submitting') AND task_id IS NULL",
            (key, owner),
        )

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def _step(
        self,
        key: str,
        new: JobState,
        task_id: str | None,
        assignments: str,
        params: tuple[Any, ...],
    ) -> None:
        """One step of the lifecycle to ``new``, only from a state it is allowed from."""
        try:
            self._try_step(key, new, assignments, params)
        except LedgerError as exc:
            exc.task_id = task_id  # a task the ledger may not know: the error names it
            raise

    def _try_step(self, key: str, new: JobState, assignments: str, params: tuple[Any, ...]) -> None:
        allowed = _values(sources_of(new))
        marks = ", ".join("?" * len(allowed))
        cur = self._run(
            "record a task",
            f"UPDATE ledger SET state = ?, {assignments}, updated_at = ? "  # noqa: S608
            f"WHERE key = ? AND state IN ({marks})",
            (new.value, *params, time.time(), key, *allowed),
        )
        if cur.rowcount == 1:
            return
        entry = self.get(key)
        what = f"ledger {self._location}: row {key!r}"
        check_step(
            None if entry is None else entry.job_state, new, what=what, location=self._location
        )
        raise LedgerError(  # pragma: no cover - the row changed between two statements
            f"{what}: the step to {new} did not happen", location=self._location
        )


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (a ledger server) rather than a folder."""
    return "://" in location


def open_ledger(
    location: str | os.PathLike[str],
    namespace: str | None = None,
    *,
    account: str | None = None,
) -> Ledger:
    """The ledger at a URL (its scheme's backend serves it) or in a folder (anything else).

    ``redis://``: a ``RedisLedger``, with the ``redis`` extra.

    Args:
        namespace: The Redis hash; default one per ``account`` (its fingerprint), where
            entries of the hash every account shared before are still found.

    Raises:
        LedgerError: the folder's ledger cannot be opened.
        ValidationError: no installed backend serves the URL's scheme.
    """
    if isinstance(location, str) and is_url(location):
        options: dict[str, Any] = {"namespace": namespace or DEFAULT_NAMESPACE}
        if namespace is None and account is not None:
            options = {"namespace": account_namespace(account), "legacy": DEFAULT_NAMESPACE}
        ledger: Ledger = registry.resolve("ledger", masked(location), **options)
        return ledger
    return SqliteLedger.open(location)
