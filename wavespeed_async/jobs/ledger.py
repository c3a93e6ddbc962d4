"""The ledger: which task each row of a pipeline became, kept outside the workers.

A row key moves through ``claimed -> submitting -> created -> completed | failed``; a
``submitting`` key whose submit got no answer becomes ``unknown`` (a billed task may exist:
it is reported, never re-sent).

* ``claimed`` (owner, ``claimed_at``): a worker took the row and waits for its turn to send
  it (the Client's in-flight cap, start window, 429 cool-down). Nothing was sent, so another
  worker may **take it over** (:meth:`Ledger.take_over`, a compare-and-set on the owner and
  the claim time) and send it itself.
* ``submitting``: the owner moved its claim here (:meth:`Ledger.submitting`, a
  compare-and-set that succeeds only while the row is still ``claimed`` by that owner) just
  before sending the request. Only that owner sends it, so a row's submit is sent at most
  once, whoever took the row over when; a ``submitting`` row is never taken over.

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

The calls are synchronous and small (a statement or a round trip or two): the id must be
written from the client's ``on_task_created`` hook, before polling starts, and that hook is
synchronous. The ledger stores keys, task ids, output URLs and errors, never credentials. A
store that cannot be read or written raises :class:`LedgerError`.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from wavespeed_async._core import registry
from wavespeed_async._core.errors import LedgerError
from wavespeed_async._core.secret import masked
from wavespeed_async.jobs.lifecycle import JobState
from wavespeed_async.jobs.sqlite import open_database

__all__ = [
    "DEFAULT_NAMESPACE",
    "Entry",
    "Ledger",
    "SqliteLedger",
    "new_owner",
    "open_ledger",
    "owner_gone",
]

#: The ledger's key states (see :mod:`wavespeed_async.jobs.lifecycle`). ``completed`` and
#: ``failed`` are final; ``created`` is polled again.
STATES: Final = tuple(s.value for s in JobState if s not in (JobState.PENDING, JobState.INVALID))

#: The Redis hash used when no namespace is given.
DEFAULT_NAMESPACE: Final = "wavespeed-async:ledger"

# The schema of the first version (no CHECK on ``state``): a ledger it wrote opens as is.
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
    updated_at REAL NOT NULL
);
"""


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """What the ledger knows about one row key."""

    state: str
    task_id: str | None = None
    outputs: list[str] = msgspec.field(default_factory=list)
    error: str | None = None
    owner: str | None = None
    claimed_at: float = 0.0
    #: When the state last changed (unix seconds; 0 in entries of the first version).
    changed_at: float = 0.0

    @property
    def final(self) -> bool:
        """Completed or failed: the row's result is known."""
        return self.state in ("completed", "failed")

    @property
    def since(self) -> float:
        """When the entry took its current state."""
        return max(self.claimed_at, self.changed_at)


_encode = msgspec.json.Encoder().encode


def _host() -> str:
    """This host's name, plus the process-id namespace where there is one (containers that
    share a host name, such as ``--network host`` ones, keep their pids apart)."""
    name = socket.gethostname()
    try:
        return f"{name}#{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return name


def new_owner() -> str:
    """A fresh owner id, ``<host>/<pid>/<random>``: one per claim holder."""
    return f"{_host()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def owner_gone(owner: str | None) -> bool:
    """Whether ``owner`` is known to be dead: a process of this host (and pid namespace)
    that no longer runs.

    ``False`` when it cannot be told (another host, an id of another form)."""
    if owner is None or owner.count("/") < 2:
        return False
    host, pid_text, _ = owner.rsplit("/", 2)
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it runs, as another user
    try:  # a zombie has died; only its exit status is left to collect
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Ledger(Protocol):
    """Row key -> task, shared by every worker of a pipeline."""

    def claim(self, key: str, owner: str) -> Entry | None:
        """Claim a key the ledger does not know for ``owner`` (state ``claimed``);
        ``None`` if claimed now, else the entry that was there (nothing changed)."""
        ...

    def take_over(self, key: str, owner: str, seen: Entry) -> bool:
        """Make ``owner`` the holder of a ``claimed`` key, if it is still as ``seen``
        (same owner, same claim time); ``False`` if it changed meanwhile."""
        ...

    def submitting(self, key: str, owner: str) -> bool:
        """Just before the submit is sent: move ``owner``'s claim to ``submitting``;
        ``False`` (send nothing) if the key is no longer ``claimed`` by ``owner``."""
        ...

    def get(self, key: str) -> Entry | None: ...

    def created(self, key: str, task_id: str) -> None:
        """The key's task exists (call the moment its id is known)."""
        ...

    def finished(
        self, key: str, task_id: str | None, state: str, outputs: list[str], error: str | None
    ) -> None:
        """The key's task ended (``state``: ``completed`` or ``failed``)."""
        ...

    def unknown(self, key: str, error: str) -> None:
        """The key's submit got no answer: a task may exist; never re-sent."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim on a key that has no task: its submit was refused, or
        it was never sent (``claimed``)."""
        ...

    def close(self) -> None: ...


@contextmanager
def failing(location: str, what: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Raise the store's own errors as :class:`LedgerError` naming the ledger."""
    try:
        yield
    except errors as exc:
        raise LedgerError(
            f"ledger {location}: cannot {what}: {type(exc).__name__}: {exc}", location=location
        ) from exc


class SqliteLedger:
    """A ledger in ``<folder>/ledger.sqlite3`` for the workers of one machine."""

    def __init__(self, conn: sqlite3.Connection, location: str = "") -> None:
        self.conn = conn
        self.location = location

    def __repr__(self) -> str:
        return f"<SqliteLedger {self.location!r}>"

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SqliteLedger:
        location = os.fspath(folder)
        with failing(location, "open it", (LedgerError, OSError, sqlite3.Error)):
            conn = open_database(Path(folder) / "ledger.sqlite3", _SCHEMA, 1)
            # NORMAL in WAL mode: a committed write survives the death of any process (what
            # a worker's death is); only an operating-system crash may lose the last writes.
            conn.execute("PRAGMA synchronous = NORMAL")
        return cls(conn, location)

    def _run(self, what: str, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        with failing(self.location, what, (sqlite3.Error,)):
            return self.conn.execute(sql, params)

    def claim(self, key: str, owner: str) -> Entry | None:
        now = time.time()
        cur = self._run(
            "claim a row",
            "INSERT INTO ledger(key, state, owner, claimed_at, updated_at) "
            "VALUES (?, 'claimed', ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, owner, now, now),
        )
        if cur.rowcount == 1:
            return None
        return self.get(key)

    def take_over(self, key: str, owner: str, seen: Entry) -> bool:
        now = time.time()
        cur = self._run(
            "take over a claim",
            "UPDATE ledger SET owner = ?, claimed_at = ?, updated_at = ? "
            "WHERE key = ? AND state = 'claimed' AND owner = ? AND claimed_at = ?",
            (owner, now, now, key, seen.owner, seen.claimed_at),
        )
        return cur.rowcount == 1

    def submitting(self, key: str, owner: str) -> bool:
        cur = self._run(
            "record a submit",
            "UPDATE ledger SET state = 'submitting', updated_at = ? "
            "WHERE key = ? AND state = 'claimed' AND owner = ?",
            (time.time(), key, owner),
        )
        return cur.rowcount == 1

    def get(self, key: str) -> Entry | None:
        row = self._run(
            "read a row",
            "SELECT state, task_id, outputs, error, owner, claimed_at, updated_at "
            "FROM ledger WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        state, task_id, outputs, error, owner, claimed_at, updated_at = row
        return Entry(
            state=state,
            task_id=task_id,
            outputs=msgspec.json.decode(outputs) if outputs else [],
            error=error,
            owner=owner,
            claimed_at=claimed_at,
            changed_at=updated_at,
        )

    def created(self, key: str, task_id: str) -> None:
        self._set(key, task_id, "state = 'created', task_id = ?, error = NULL", (task_id,))

    def finished(
        self, key: str, task_id: str | None, state: str, outputs: list[str], error: str | None
    ) -> None:
        self._set(
            key,
            task_id,
            "state = ?, task_id = COALESCE(?, task_id), outputs = ?, error = ?",
            (state, task_id, _encode(outputs).decode(), error),
        )

    def unknown(self, key: str, error: str) -> None:
        self._set(key, None, "state = 'unknown', error = ?", (error,))

    def release(self, key: str, owner: str) -> None:
        self._run(
            "release a claim",
            "DELETE FROM ledger WHERE key = ? AND owner = ? "
            "AND state IN ('claimed', 'submitting') AND task_id IS NULL",
            (key, owner),
        )

    def close(self) -> None:
        self.conn.close()

    def _set(
        self, key: str, task_id: str | None, assignments: str, params: tuple[Any, ...]
    ) -> None:
        try:
            self._run(
                "record a task",
                f"UPDATE ledger SET {assignments}, updated_at = ? WHERE key = ?",  # noqa: S608 - constant SQL
                (*params, time.time(), key),
            )
        except LedgerError as exc:
            exc.task_id = task_id
            raise


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (a ledger server) rather than a folder."""
    return "://" in location


def open_ledger(location: str | os.PathLike[str], namespace: str | None = None) -> Ledger:
    """A URL opens the ledger its scheme's backend serves (``redis://``: a
    ``RedisLedger``, with the ``redis`` extra); anything else is a folder.

    Raises:
        LedgerError: the folder's ledger cannot be opened.
        ValidationError: no installed backend serves the URL's scheme.
    """
    if isinstance(location, str) and is_url(location):
        ledger: Ledger = registry.resolve(
            "ledger", masked(location), namespace=namespace or DEFAULT_NAMESPACE
        )
        return ledger
    return SqliteLedger.open(location)
