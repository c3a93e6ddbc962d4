"""The ledger in Redis: one hash per namespace, shared by every machine of a pipeline.

Each field is a row key; its value is the row's :class:`~wavespeed_async.jobs.ledger.Entry` as
JSON. A claim is an ``HSETNX``; every other change reads the entry and swaps it with a
compare-and-set Lua script (the swap happens only if the field still holds what was read),
so changes from many processes and machines never overwrite each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from wavespeed_async._core.errors import LedgerError, ValidationError
from wavespeed_async._core.install import install_command
from wavespeed_async._core.secret import redacted_url
from wavespeed_async.jobs.ledger import DEFAULT_NAMESPACE, Entry, failing

__all__ = ["RedisLedger"]

_decode_entry = msgspec.json.Decoder(Entry).decode
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
    """A ledger in one Redis hash (``namespace``), shared by every machine."""

    def __init__(self, url: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.location = redacted_url(url)
        self._hash = namespace
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ValidationError(
                "ledger",
                f"ledger: a Redis URL needs redis-py: {install_command('redis')}",
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        with failing(self.location, "open it", self._errors):
            self._redis = redis.Redis.from_url(
                url, socket_timeout=30.0, socket_connect_timeout=10.0
            )
        self._cas = self._redis.register_script(_CAS)

    def __repr__(self) -> str:  # the URL may carry a password
        return f"<RedisLedger {self.location!r} namespace={self._hash!r}>"

    def claim(self, key: str, owner: str) -> Entry | None:
        now = time.time()
        entry = Entry(state="claimed", owner=owner, claimed_at=now, changed_at=now)
        with failing(self.location, "claim a row", self._errors):
            if self._redis.hsetnx(self._hash, key, _encode(entry)):
                return None
        return self.get(key)

    def get(self, key: str) -> Entry | None:
        raw = self._raw(key)
        return None if raw is None else _decode_entry(raw)

    def _raw(self, key: str) -> bytes | None:
        with failing(self.location, "read a row", self._errors):
            raw = self._redis.hget(self._hash, key)
        return raw.encode() if isinstance(raw, str) else raw

    def _change(self, key: str, what: str, decide: Callable[[Entry | None], Entry | None]) -> bool:
        """Apply ``decide`` to the key's entry atomically (a compare-and-set, tried again
        if another process changed the entry meanwhile). ``decide`` returns the new entry,
        ``None`` to delete it, or the entry it was given to leave it alone (then ``False``)."""
        for _ in range(100):
            raw = self._raw(key)
            old = None if raw is None else _decode_entry(raw)
            new = decide(old)
            if new is old:
                return False
            with failing(self.location, what, self._errors):
                swapped = self._cas(
                    keys=[self._hash], args=[key, raw or b"", b"" if new is None else _encode(new)]
                )
            if swapped:
                return True
        raise LedgerError(  # pragma: no cover - a hundred lost races in a row
            f"ledger {self.location}: cannot {what}: the row {key!r} keeps changing",
            location=self.location,
        )

    def take_over(self, key: str, owner: str, seen: Entry) -> bool:
        def decide(old: Entry | None) -> Entry | None:
            if old is None or old.state != "claimed":
                return old
            if (old.owner, old.claimed_at) != (seen.owner, seen.claimed_at):
                return old
            now = time.time()
            return msgspec.structs.replace(old, owner=owner, claimed_at=now, changed_at=now)

        return self._change(key, "take over a claim", decide)

    def submitting(self, key: str, owner: str) -> bool:
        def decide(old: Entry | None) -> Entry | None:
            if old is None or old.state != "claimed" or old.owner != owner:
                return old
            return msgspec.structs.replace(old, state="submitting", changed_at=time.time())

        return self._change(key, "record a submit", decide)

    def _update(self, key: str, tid: str | None, **changes: Any) -> None:
        def decide(old: Entry | None) -> Entry | None:
            base = old or Entry(state="submitting", claimed_at=time.time())
            return msgspec.structs.replace(base, changed_at=time.time(), **changes)

        try:
            self._change(key, "record a task", decide)
        except LedgerError as exc:
            exc.task_id = tid
            raise

    def created(self, key: str, task_id: str) -> None:
        self._update(key, task_id, state="created", task_id=task_id, error=None)

    def finished(
        self, key: str, task_id: str | None, state: str, outputs: list[str], error: str | None
    ) -> None:
        changes: dict[str, Any] = {"state": state, "outputs": outputs, "error": error}
        if task_id is not None:
            changes["task_id"] = task_id
        self._update(key, task_id, **changes)

    def unknown(self, key: str, error: str) -> None:
        self._update(key, None, state="unknown", error=error)

    def release(self, key: str, owner: str) -> None:
        def decide(old: Entry | None) -> Entry | None:
            if (
                old is None
                or old.owner != owner
                or old.state not in ("claimed", "submitting")
                or old.task_id is not None
            ):
                return old
            return None

        self._change(key, "release a claim", decide)

    def close(self) -> None:
        self._redis.close()
