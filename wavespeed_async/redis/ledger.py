"""The ledger in Redis: one hash per namespace, shared by every machine of a pipeline.

Each field is a row key; its value is the row's :class:`~wavespeed_async.jobs.entry.Entry`
as JSON. A claim is an ``HSETNX``; every other change reads the entry and swaps it with a
compare-and-set Lua script (the swap happens only if the field still holds what was read),
so changes from many processes and machines never overwrite each other. Every change is a
step of the one lifecycle (:mod:`wavespeed_async.jobs.lifecycle`), checked before the swap.

The default namespace is one hash per account. Entries of the hash that every account
shared before (``legacy``) are still found: one that may stand for a task (not merely
``claimed``) is copied into the account's hash, unverified, the first time its row is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from wavespeed_async._core.errors import LedgerError, ValidationError
from wavespeed_async._core.install import install_command
from wavespeed_async._core.secret import masked_url, redacted_url
from wavespeed_async.jobs.entry import DEFAULT_NAMESPACE, Entry, Stamp, decode_entry, failing
from wavespeed_async.jobs.lifecycle import JobState, check_step

__all__ = ["RedisLedger"]

_encode = msgspec.json.Encoder().encode

# Compare-and-set of one field of the hash: KEYS[1] the hash, ARGV[1] the field, ARGV[2] the
# value expected ('' = absent), ARGV[3] the new value ('' = delete). 1 if set, else 0.
_CAS: Final = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '' end
if cur ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""


class RedisLedger:
    """A ledger in one Redis hash (``namespace``), shared by every machine.

    Safe to use from several threads.

    Args:
        url: ``redis://[:password@]host:port/db``; never shown with its password.
        namespace: The hash.
        legacy: A hash whose entries are also found (see the module's docstring).
    """

    def __init__(
        self, url: str, namespace: str = DEFAULT_NAMESPACE, *, legacy: str | None = None
    ) -> None:
        url = masked_url(url)  # no traceback's locals show its password
        self._location = redacted_url(url)
        self._hash = namespace
        self._legacy = legacy if legacy != namespace else None
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ValidationError(
                "ledger",
                f"ledger: a Redis URL needs redis-py: {install_command('redis')}",
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        with failing(self._location, "open it", self._errors):
            self._redis = redis.Redis.from_url(
                url, socket_timeout=30.0, socket_connect_timeout=10.0
            )
        self._cas = self._redis.register_script(_CAS)

    def __repr__(self) -> str:  # the URL may carry a password
        return f"<RedisLedger {self._location!r} namespace={self._hash!r}>"

    @property
    def location(self) -> str:
        return self._location

    def claim(self, key: str, owner: str, stamp: Stamp | None = None) -> Entry | None:
        if self._legacy is not None:
            other = self.get(key)  # brings an entry of the legacy hash over first
            if other is not None:
                return other
        now = time.time()
        entry = Entry(state="claimed", owner=owner, claimed_at=now, changed_at=now).stamped(stamp)
        with failing(self._location, "claim a row", self._errors):
            if self._redis.hsetnx(self._hash, key, _encode(entry)):
                return None
        return self.get(key)

    def get(self, key: str) -> Entry | None:
        raw = self._raw(self._hash, key)
        if raw is None and self._legacy is not None:
            raw = self._adopt(key, self._legacy)
        return None if raw is None else decode_entry(raw, key=key, location=self._location)

    def state_of(self, key: str) -> JobState | None:
        entry = self.get(key)
        return None if entry is None else entry.job_state

    def _raw(self, name: str, key: str) -> bytes | None:
        with failing(self._location, "read a row", self._errors):
            raw = self._redis.hget(name, key)
        return raw.encode() if isinstance(raw, str) else raw

    def _adopt(self, key: str, legacy: str) -> bytes | None:
        """The entry of ``key`` in ``legacy``, copied into this hash if it may stand for a task."""
        raw = self._raw(legacy, key)
        if raw is None:
            return None
        entry = decode_entry(raw, key=key, location=self._location)
        if entry.state == JobState.CLAIMED.value:
            return None  # nothing was sent: the row is sent again under this account
        with failing(self._location, "read a row", self._errors):
            self._redis.hsetnx(self._hash, key, raw)
        return self._raw(self._hash, key)

    def _change(self, key: str, what: str, decide: Callable[[Entry | None], Entry | None]) -> bool:
        """Apply ``decide`` to the key's entry atomically.

        A compare-and-set, tried again if another process changed the entry meanwhile.
        ``decide`` returns the new entry, ``None`` to delete it, or the entry it was given to
        leave it alone (then ``False``).
        """
        for _ in range(100):
            raw = self._raw(self._hash, key)
            old = None if raw is None else decode_entry(raw, key=key, location=self._location)
            new = decide(old)
            if new is old:
                return False
            with failing(self._location, what, self._errors):
                swapped = self._cas(
                    keys=[self._hash], args=[key, raw or b"", b"" if new is None else _encode(new)]
                )
            if swapped:
                return True
        raise LedgerError(  # pragma: no cover - a hundred lost races in a row
            f"ledger {self._location}: cannot {what}: the row {key!r} keeps changing",
            location=self._location,
        )

    def take_over(self, key: str, owner: str, seen: Entry, stamp: Stamp | None = None) -> bool:
        def decide(old: Entry | None) -> Entry | None:
            if old is None or old.state != JobState.CLAIMED.value:
                return old
            if (old.owner, old.claimed_at) != (seen.owner, seen.claimed_at):
                return old
            now = time.time()
            taken = msgspec.structs.replace(old, owner=owner, claimed_at=now, changed_at=now)
            return taken.stamped(stamp)

        return self._change(key, "take over a claim", decide)

    def mark_submitting(self, key: str, *, owner: str = "") -> bool:
        def decide(old: Entry | None) -> Entry | None:
            if old is None or old.state != JobState.CLAIMED.value or old.owner != owner:
                return old
            return msgspec.structs.replace(
                old, state=JobState.SUBMITTING.value, changed_at=time.time()
            )

        return self._change(key, "record a submit", decide)

    def mark_not_sent(self, key: str, *, owner: str = "") -> bool:
        def decide(old: Entry | None) -> Entry | None:
            if (
                old is None
                or old.state != JobState.SUBMITTING.value
                or old.owner != owner
                or old.task_id is not None
            ):
                return old
            now = time.time()
            return msgspec.structs.replace(
                old, state=JobState.CLAIMED.value, claimed_at=now, changed_at=now
            )

        return self._change(key, "record a submit that created nothing", decide)

    def _step(self, key: str, new: JobState, tid: str | None, **changes: Any) -> None:
        """One step of the lifecycle to ``new``, only from a state it is allowed from."""
        what = f"ledger {self._location}: row {key!r}"

        def decide(old: Entry | None) -> Entry | None:
            check_step(
                None if old is None else old.job_state, new, what=what, location=self._location
            )
            if old is None:  # pragma: no cover - no step leads from "no entry" to a task's
                raise LedgerError(f"{what}: no entry", location=self._location)
            return msgspec.structs.replace(old, state=new.value, changed_at=time.time(), **changes)

        try:
            self._change(key, "record a task", decide)
        except LedgerError as exc:
            exc.task_id = tid  # a task the ledger may not know: the error names it
            raise

    def mark_created(self, key: str, task_id: str) -> None:
        self._step(key, JobState.CREATED, task_id, task_id=task_id, error=None)

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
        changes: dict[str, Any] = {"outputs": list(outputs), "error": error, "proof": proof}
        if task_id is not None:
            changes["task_id"] = task_id
        self._step(key, state, task_id, **changes)

    def mark_unknown(self, key: str, error: str) -> None:
        self._step(key, JobState.UNKNOWN, None, error=error)

    def release(self, key: str, owner: str) -> None:
        def decide(old: Entry | None) -> Entry | None:
            if (
                old is None
                or old.owner != owner
                or old.state not in (JobState.CLAIMED.value, JobState.SUBMITTING.value)
                or old.task_id is not None
            ):
                return old
            return None

        self._change(key, "release a claim", decide)

    def close(self) -> None:
        self._redis.close()
