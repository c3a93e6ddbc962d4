"""The ledger: which task each row of a pipeline became, kept outside the workers.

A row key moves through ``submitting -> created -> completed | failed``; a ``submitting``
key whose submit got no answer becomes ``unknown`` (a billed task may exist: it is reported,
never re-sent). A key is *claimed* atomically before its submit, so two workers that get the
same row at once (a retried block while the first attempt still runs, a second pipeline)
never both submit it; a refused submit (nothing created) releases the claim.

Two stores obey one small interface (:class:`Ledger`):

* :class:`SqliteLedger`: a folder on one machine (``<folder>/ledger.sqlite3``, WAL), shared
  by every worker process of that machine;
* :class:`RedisLedger`: a Redis URL, one hash per namespace, shared by every machine.

The calls are synchronous and small (one statement or one round trip each): the id must be
written from the client's ``on_task_created`` hook, before polling starts, and that hook is
synchronous. The ledger stores keys, task ids, output URLs and errors, never credentials.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec

from wavespeed_async._errors import ValidationError
from wavespeed_async._journal import open_database

__all__ = ["Entry", "Ledger", "RedisLedger", "SqliteLedger", "open_ledger"]

#: Key states. ``completed`` and ``failed`` are final; ``created`` is polled again.
STATES: Final = ("submitting", "created", "completed", "failed", "unknown")

#: The Redis hash used when no namespace is given.
DEFAULT_NAMESPACE: Final = "wavespeed-async:ledger"

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
    claimed_at REAL NOT NULL,      -- unix seconds
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

    @property
    def final(self) -> bool:
        """Completed or failed: the row's result is known."""
        return self.state in ("completed", "failed")


_decode_entry = msgspec.json.Decoder(Entry).decode


class Ledger(Protocol):
    """Row key -> task, shared by every worker of a pipeline."""

    def claim(self, key: str, owner: str) -> Entry | None:
        """Claim ``key`` for a submit by ``owner``; ``None`` if claimed now, else the entry
        that was there (nothing changed)."""
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
        """Drop ``owner``'s claim on a key whose submit created nothing (refused)."""
        ...

    def close(self) -> None: ...


@dataclass
class SqliteLedger:
    """A ledger in ``<folder>/ledger.sqlite3`` for the workers of one machine."""

    conn: sqlite3.Connection

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> SqliteLedger:
        conn = open_database(Path(folder) / "ledger.sqlite3", _SCHEMA, 1)
        # NORMAL in WAL mode: a committed write survives the death of any process (what a
        # worker's death is); only an operating-system crash may lose the last writes.
        conn.execute("PRAGMA synchronous = NORMAL")
        return cls(conn)

    def claim(self, key: str, owner: str) -> Entry | None:
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO ledger(key, state, owner, claimed_at, updated_at) "
            "VALUES (?, 'submitting', ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, owner, now, now),
        )
        if cur.rowcount == 1:
            return None
        return self.get(key)

    def get(self, key: str) -> Entry | None:
        row = self.conn.execute(
            "SELECT state, task_id, outputs, error, owner, claimed_at FROM ledger WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        state, task_id, outputs, error, owner, claimed_at = row
        return Entry(
            state=state,
            task_id=task_id,
            outputs=msgspec.json.decode(outputs) if outputs else [],
            error=error,
            owner=owner,
            claimed_at=claimed_at,
        )

    def created(self, key: str, task_id: str) -> None:
        self._set(key, "state = 'created', task_id = ?, error = NULL", (task_id,))

    def finished(
        self, key: str, task_id: str | None, state: str, outputs: list[str], error: str | None
    ) -> None:
        self._set(
            key,
            "state = ?, task_id = COALESCE(?, task_id), outputs = ?, error = ?",
            (state, task_id, msgspec.json.encode(outputs).decode(), error),
        )

    def unknown(self, key: str, error: str) -> None:
        self._set(key, "state = 'unknown', error = ?", (error,))

    def release(self, key: str, owner: str) -> None:
        self.conn.execute(
            "DELETE FROM ledger WHERE key = ? AND owner = ? AND state = 'submitting'",
            (key, owner),
        )

    def close(self) -> None:
        self.conn.close()

    def _set(self, key: str, assignments: str, params: tuple[Any, ...]) -> None:
        self.conn.execute(
            f"UPDATE ledger SET {assignments}, updated_at = ? WHERE key = ?",  # noqa: S608 - constant SQL
            (*params, time.time(), key),
        )


class RedisLedger:
    """A ledger in one Redis hash (``namespace``), shared by every machine."""

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ValidationError(
                "ledger",
                "ledger: a Redis URL needs redis-py: pip install 'wavespeed-async[redis]'",
            ) from None
        self._redis = redis.Redis.from_url(url)
        self._hash = namespace

    def __repr__(self) -> str:  # the URL may carry a password
        return f"<RedisLedger namespace={self._hash!r}>"

    def claim(self, key: str, owner: str) -> Entry | None:
        entry = Entry(state="submitting", owner=owner, claimed_at=time.time())
        if self._redis.hsetnx(self._hash, key, msgspec.json.encode(entry)):
            return None
        return self.get(key)

    def get(self, key: str) -> Entry | None:
        raw = self._redis.hget(self._hash, key)
        return None if raw is None else _decode_entry(raw)

    def _update(self, key: str, **changes: Any) -> None:
        # Only the worker that holds a key's claim writes to it, so read-modify-write is safe.
        old = self.get(key) or Entry(state="submitting", claimed_at=time.time())
        new = msgspec.structs.replace(old, **changes)
        self._redis.hset(self._hash, key, msgspec.json.encode(new))

    def created(self, key: str, task_id: str) -> None:
        self._update(key, state="created", task_id=task_id, error=None)

    def finished(
        self, key: str, task_id: str | None, state: str, outputs: list[str], error: str | None
    ) -> None:
        old = self.get(key)
        tid = task_id if task_id is not None else (old.task_id if old else None)
        self._update(key, state=state, task_id=tid, outputs=outputs, error=error)

    def unknown(self, key: str, error: str) -> None:
        self._update(key, state="unknown", error=error)

    def release(self, key: str, owner: str) -> None:
        old = self.get(key)
        if old is not None and old.state == "submitting" and old.owner == owner:
            self._redis.hdel(self._hash, key)

    def close(self) -> None:
        self._redis.close()


def is_redis_url(location: str) -> bool:
    return location.startswith(("redis://", "rediss://", "unix://"))


def open_ledger(location: str | os.PathLike[str], namespace: str | None = None) -> Ledger:
    """A Redis URL opens a :class:`RedisLedger`; anything else is a folder."""
    if isinstance(location, str) and is_redis_url(location):
        return RedisLedger(location, namespace or DEFAULT_NAMESPACE)
    return SqliteLedger.open(location)
