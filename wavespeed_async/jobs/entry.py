"""What a ledger records per row key, who holds a claim, and the interface of every ledger.

A row key moves through ``claimed -> submitting -> created -> completed | failed`` (the one
lifecycle of :mod:`wavespeed_async.jobs.lifecycle`); a ``submitting`` key whose submit got
no answer becomes ``unknown`` (a billed task may exist: it is reported, never re-sent).

Each entry also records what it is the task of (:class:`Stamp`): the model, a hash of the
input and the account (a hash of the API key and base URL, never the key). A worker that
finds an entry of another model, input or account raises a ``LedgerError`` naming the row
rather than take another job's (or another account's) result. Entries written by an earlier
version have no stamp: they are *unverified*, and a worker follows them conservatively
(see ``docs/ray.md``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, NamedTuple, Protocol

import msgspec

from wavespeed_async._core.errors import LedgerError
from wavespeed_async.jobs.lifecycle import JobState, JobStore, state_of_value

__all__ = [
    "DEFAULT_NAMESPACE",
    "Entry",
    "Ledger",
    "Stamp",
    "account_namespace",
    "decode_entry",
    "failing",
    "new_owner",
    "owner_gone",
]

#: The Redis hash of a ledger given no namespace and no account (and the one that every
#: account shared before namespaces were per account: its entries are still found).
DEFAULT_NAMESPACE: Final = "wavespeed-async:ledger"


def account_namespace(account: str) -> str:
    """The Redis hash of one account's ledger (``account``: its fingerprint)."""
    return f"{DEFAULT_NAMESPACE}:{account}"


class Stamp(NamedTuple):
    """What a row's entry is the task of."""

    model: str
    #: A hash of the model's input (see ``wavespeed_async.ray._generate.input_hash``).
    input_hash: str
    #: The account's fingerprint (a hash of the API key and the base URL).
    account: str


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
    #: What the entry is the task of (``None`` in entries of earlier versions).
    model: str | None = None
    input_hash: str | None = None
    account: str | None = None
    #: A final entry's tag under a key derived from the API key (see ``docs/ray.md``):
    #: without a valid one, its result is asked of the API, never taken as it is.
    proof: str | None = None

    @property
    def final(self) -> bool:
        """Completed or failed: the row's result is known."""
        return self.state in ("completed", "failed")

    @property
    def since(self) -> float:
        """When the entry took its current state."""
        return max(self.claimed_at, self.changed_at)

    @property
    def verified(self) -> bool:
        """Whether the entry records what it is the task of (see :class:`Stamp`)."""
        return self.account is not None

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)

    def stamped(self, stamp: Stamp | None) -> Entry:
        if stamp is None:
            return self
        return msgspec.structs.replace(
            self, model=stamp.model, input_hash=stamp.input_hash, account=stamp.account
        )


_entry_decoder = msgspec.json.Decoder(Entry)


def decode_entry(raw: bytes, *, key: str, location: str) -> Entry:
    """An entry stored as JSON, checked.

    Raises:
        LedgerError: not an entry (a damaged store), naming the ledger and the row.
    """
    try:
        entry = _entry_decoder.decode(raw)
    except Exception as exc:  # any decoding failure of stored bytes is damage
        raise LedgerError(
            f"ledger {location}: row {key!r} is damaged ({type(exc).__name__}: {str(exc)[:200]})",
            location=location,
        ) from None
    state_of_value(entry.state, what=f"ledger {location}: row {key!r}", location=location)
    return entry


def _host() -> str:
    """This host's name, plus the process-id namespace where there is one.

    Containers that share a host name, such as ``--network host`` ones, keep their pids apart.
    """
    name = socket.gethostname()
    try:
        return f"{name}#{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return name


def new_owner() -> str:
    """A fresh owner id, ``<host>/<pid>/<random>``: one per claim holder."""
    import uuid

    return f"{_host()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def owner_gone(owner: str | None) -> bool:
    """Whether ``owner`` is known to be dead: a process of this host that no longer runs.

    The process must be of this host and pid namespace. ``False`` when it cannot be told
    (another host, an id of another form).
    """
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
    except OverflowError:
        return False  # not a pid
    try:  # a zombie has died; only its exit status is left to collect
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextmanager
def failing(location: str, what: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Raise the store's own errors as :class:`LedgerError` naming the ledger."""
    try:
        yield
    except errors as exc:
        raise LedgerError(
            f"ledger {location}: cannot {what}: {type(exc).__name__}: {exc}", location=location
        ) from exc


class Ledger(JobStore[str], Protocol):
    """Row key -> task, shared by every worker of a pipeline.

    It offers the lifecycle steps of :class:`~wavespeed_async.jobs.lifecycle.JobStore`,
    plus claims.
    """

    def claim(self, key: str, owner: str, stamp: Stamp | None = None) -> Entry | None:
        """Claim a key the ledger does not know for ``owner`` (state ``claimed``).

        The claim is the task of ``stamp`` (``None``: an entry that records nothing, as an
        earlier version's). Returns ``None`` if claimed now, else the entry that was there
        (nothing changed).
        """
        ...

    def take_over(self, key: str, owner: str, seen: Entry, stamp: Stamp | None = None) -> bool:
        """Make ``owner`` the holder of a ``claimed`` key, if it is still as ``seen``.

        Still as ``seen``: the same owner, the same claim time. ``False`` if it changed
        meanwhile.
        """
        ...

    def get(self, key: str) -> Entry | None: ...

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
        """The row's task ended; ``proof``: the writer's tag of the result."""
        ...

    def release(self, key: str, owner: str) -> None:
        """Drop ``owner``'s claim on a key that has no task.

        Its submit was refused, or it was never sent (``claimed``).
        """
        ...

    def close(self) -> None: ...
