"""SQLite files of the job stores: opened the same way, WAL and full durability."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Final

from wavespeed_async._core.errors import LedgerError

__all__ = ["open_database", "refuse_links"]

#: How long a statement waits while another connection holds the file.
_BUSY_S: Final = 10.0


def _os_cause(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's message, or the operating system's when it says more (e.g. EMFILE)."""
    try:
        with path.open("ab"):
            pass
    except OSError as os_exc:
        return str(os_exc)
    return str(exc)


def _to_wal(conn: sqlite3.Connection, wait_s: float) -> Any:
    """Switch the file to WAL mode, waiting up to ``wait_s`` while others hold it.

    SQLite answers "database is locked" at once, without its busy timeout, when several
    connections switch a new file at the same moment; the switch is tried again.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.001
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _set_up(conn: sqlite3.Connection, schema: str, version: int) -> str | None:
    """Configure a new connection and create the tables; return a problem, if any."""
    mode = _to_wal(conn, _BUSY_S)
    if mode is None or str(mode[0]).lower() != "wal":
        return "cannot switch the file to WAL mode"
    # FULL: a commit is fsync'ed, so a recorded task id survives even an OS crash.
    conn.execute("PRAGMA synchronous = FULL")
    conn.executescript(schema)
    # OR IGNORE: processes opening a new file at once each try to write the version; the
    # first one's stands and the others read it.
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(version),))
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is not None and int(row[0]) > version:
        return f"written by a newer wavespeed-async (schema {row[0]}); upgrade it"
    return None


def refuse_links(path: Path, *, what: str) -> None:
    """Raise if the SQLite file at ``path``, or its ``-wal`` / ``-shm`` companions, is a link.

    SQLite would follow a symbolic link and write wherever it points.

    Raises:
        LedgerError: one of them is a link (nothing was opened or written).
    """
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.is_symlink():
            raise LedgerError(
                f"{candidate}: is a symbolic link; the {what} is never opened through one "
                "(remove it, or use another folder)",
                location=str(path),
            )


def open_database(
    path: str | Path, schema: str, version: int, *, what: str = "ledger", threads: bool = False
) -> sqlite3.Connection:
    """Open (or create) a SQLite file in autocommit, WAL mode with full durability.

    ``schema`` must create a ``meta(key, value)`` table; the schema version is kept there.
    Every statement is its own transaction, committed (and fsync'ed) when it returns.
    ``threads``: the connection may be used from other threads (one at a time: the caller
    holds a lock).

    Raises:
        LedgerError: the file is not usable, is a symbolic link, or was written by a newer
            version.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    refuse_links(p, what=what)
    # Autocommit: every statement is its own transaction, committed when it returns.
    conn = sqlite3.connect(p, isolation_level=None, timeout=_BUSY_S, check_same_thread=not threads)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_S * 1000)}")
        problem = _set_up(conn, schema, version)
    except sqlite3.OperationalError as exc:
        conn.close()
        raise LedgerError(
            f"{p}: cannot open the {what}: {_os_cause(p, exc)}", location=str(p)
        ) from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LedgerError(f"{p}: not a usable {what}: {exc}", location=str(p)) from None
    except BaseException:
        conn.close()
        raise
    if problem is not None:
        conn.close()
        raise LedgerError(f"{p}: {problem}", location=str(p))
    return conn
