"""A worker's rows that the ledger knows: followed to their result and checked to be this job's.

Each is recorded when it ends.

:class:`Following` is the part of :class:`~wavespeed_async.ray._generate.GenerateWorker`
that handles a row key with an entry: answered from the ledger when it is final (and
verified), polled when it has a task, watched while another worker holds it, and taken over
when that worker has died or held it for ``claim_timeout_s``. Every ledger call runs in a
worker thread (:meth:`Following._io`), so a store that waits never stops the event loop.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup

from wavespeed_async._core.errors import (
    LedgerError,
    NotFoundError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.secret import SigningKey
from wavespeed_async._facade.client import Client
from wavespeed_async.jobs.ledger import Entry, Ledger, Stamp, new_owner, owner_gone
from wavespeed_async.jobs.lifecycle import JobState

if TYPE_CHECKING:
    from wavespeed_async.ray._generate import GenerateOptions

__all__ = ["Following", "RowResult", "file_stem", "input_hash"]

log = logging.getLogger("wavespeed_async")

_SAFE_STEM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_R = TypeVar("_R")


def file_stem(key: str) -> str:
    """A file name for a row key: the key itself when it is plain, else its hash."""
    if 0 < len(key) <= 100 and set(key) <= _SAFE_STEM and not key.startswith("."):
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def input_hash(inp: dict[str, Any]) -> str:
    """A hash of a model's input (independent of key order): what a ledger entry records."""
    return hashlib.sha256(msgspec.json.encode(inp, order="sorted")).hexdigest()[:32]


@dataclass(slots=True)
class RowResult:
    task_id: str | None
    status: str
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    files: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Held:
    """A followed row whose claim this worker now holds, as ``owner``: submit it."""

    owner: str


def _outputs(pred: Prediction) -> list[str]:
    return [o if isinstance(o, str) else msgspec.json.encode(o).decode() for o in pred.outputs]


class Following:
    """The followed rows of a worker (see the module's docstring)."""

    _o: GenerateOptions
    _ledger: Ledger | None
    _slots: anyio.CapacityLimiter | None
    _account: str
    _signer: SigningKey

    async def _submit(
        self,
        client: Client,
        rows: list[tuple[str, dict[str, Any]]],
        results: dict[str, RowResult],
        tg: TaskGroup,
        owner: str,
        *,
        held: bool,
    ) -> None:
        raise NotImplementedError

    @staticmethod
    async def _io(fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
        """``fn(*args, **kwargs)`` (a ledger call) in a worker thread, run to its end."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._slots is None:  # pragma: no cover - _open() runs first
            raise RuntimeError("the worker is not open")
        return self._slots

    def _stamp(self, inp: dict[str, Any]) -> Stamp:
        return Stamp(self._o.model, input_hash(inp), self._account)

    def _proof(
        self,
        key: str,
        state: JobState,
        task_id: str | None,
        outputs: list[str],
        error: str | None,
        stamp: Stamp,
    ) -> str:
        """The tag of a final row: only this account's processes can make it."""
        parts = (key, task_id or "", state.value, error or "", *stamp)
        blob = msgspec.json.encode(outputs)
        return self._signer.sign(b"ledger row", blob, *(p.encode() for p in parts)).decode()

    def _proven(self, key: str, entry: Entry) -> bool:
        """Whether a final entry carries this account's tag of what it says."""
        if entry.proof is None or entry.model is None or entry.input_hash is None:
            return False
        stamp = Stamp(entry.model, entry.input_hash, entry.account or "")
        expected = self._proof(
            key, entry.job_state, entry.task_id, list(entry.outputs), entry.error, stamp
        )
        return hmac.compare_digest(expected, entry.proof)

    def _checked(self, key: str, entry: Entry | None, inp: dict[str, Any]) -> Entry | None:
        """``entry``, if it is this job's; else a LedgerError naming the row.

        Another account's entry, or another model's or input's, is an error (never someone
        else's result). An entry of an earlier version records none of it: it is followed
        conservatively.
        """
        if entry is None or not entry.verified:
            return entry
        stamp = self._stamp(inp)
        where = self._ledger.location if self._ledger is not None else ""
        if entry.account != stamp.account:
            raise LedgerError(
                f"ledger {where}: row {key!r} was recorded by another account (another API "
                "key or base URL); its task is not used here. Give each account its own "
                "ledger (folder or namespace)",
                location=where,
            )
        if (entry.model, entry.input_hash) != (stamp.model, stamp.input_hash):
            raise LedgerError(
                f"ledger {where}: row {key!r} holds the task of another job (model "
                f"{entry.model!r}, another input); a row key must stand for one job. Use "
                "another ledger (folder or namespace) for this pipeline, or delete the row",
                location=where,
            )
        return entry

    async def _settle(
        self,
        client: Client,
        key: str,
        stamp: Stamp,
        task_id: str | None,
        pred: Prediction | None,
        error: WaveSpeedError | None,
        owner: str | None = None,
    ) -> RowResult:
        """Record one submitted row's outcome in the ledger; download its outputs."""
        ledger = self._ledger
        if error is None and pred is not None:
            if ledger is not None:
                done, outputs = JobState.COMPLETED, _outputs(pred)
                await self._io(
                    ledger.mark_finished,
                    key,
                    done,
                    task_id=pred.id,
                    outputs=outputs,
                    proof=self._proof(key, done, pred.id, outputs, None, stamp),
                )
            return await self._completed(client, key, pred)
        message = str(error)
        if isinstance(error, TaskFailedError):
            if ledger is not None:
                failed = JobState.FAILED
                await self._io(
                    ledger.mark_finished,
                    key,
                    failed,
                    task_id=task_id,
                    error=message,
                    proof=self._proof(key, failed, task_id, [], message, stamp),
                )
            return RowResult(task_id, "failed", error=message)
        if task_id is None and isinstance(error, SubmissionOutcomeUnknown):
            if ledger is not None:
                await self._io(ledger.mark_unknown, key, message)
            return RowResult(None, "unknown", error=message)
        if task_id is None:  # refused before any task existed: a later run may try again
            if ledger is not None and owner is not None:
                await self._io(ledger.release, key, owner)
            return RowResult(None, "refused", error=message)
        # The task exists and has not ended (a timeout, the API unreachable while polling):
        # the ledger keeps its id, so a later run polls it again.
        return RowResult(task_id, "pending", error=message)

    async def _completed(self, client: Client, key: str, pred: Prediction) -> RowResult:
        result = RowResult(pred.id, "completed", _outputs(pred))
        o = self._o
        try:
            if o.download is not None:
                paths = await client.download(pred, o.download, stem=file_stem(key))
                result.files = [str(p) for p in paths]
            if o.download_bytes:
                with tempfile.TemporaryDirectory(prefix="wavespeed-") as tmp:
                    paths = await client.download(pred, tmp)
                    result.images = [await anyio.Path(p).read_bytes() for p in paths]
        except WaveSpeedError as exc:
            result.error = f"download failed: {exc}"
        return result

    async def _resume(
        self,
        client: Client,
        key: str,
        inp: dict[str, Any],
        entry: Entry | None,
        results: dict[str, RowResult],
        tg: TaskGroup,
    ) -> None:
        """A key the ledger knows: followed; submitted here only once this worker holds it.

        This worker holds its claim once taken over, or claimed afresh after a release.
        """
        async with self._limiter():
            outcome = await self._follow(client, key, inp, entry)
        if isinstance(outcome, RowResult):
            results[key] = outcome
        else:
            await self._submit(client, [(key, inp)], results, tg, outcome.owner, held=True)

    async def _follow(
        self, client: Client, key: str, inp: dict[str, Any], entry: Entry | None
    ) -> RowResult | _Held:
        ledger = self._ledger
        if ledger is None:  # pragma: no cover - only rows of a ledger are followed
            raise RuntimeError("no ledger to follow a row in")
        timeout = self._o.claim_timeout_s
        stamp = self._stamp(inp)
        delay = 0.05
        while entry is None or entry.state in ("claimed", "submitting"):
            if entry is None:  # released (refused, or never sent): claim it afresh
                owner = new_owner()
                entry = self._checked(key, await self._io(ledger.claim, key, owner, stamp), inp)
                if entry is None:
                    return _Held(owner)
                continue
            if entry.state == "claimed":
                # Nothing was sent: take it over when its owner has died, or has held it
                # for claim_timeout_s. Safe either way: the old owner's move to
                # submitting fails once the claim is no longer its.
                if owner_gone(entry.owner) or time.time() >= entry.claimed_at + timeout:
                    owner = new_owner()
                    if await self._io(ledger.take_over, key, owner, entry, stamp):
                        log.info("row %s: took over the claim of %s", key, entry.owner)
                        return _Held(owner)
                    entry = self._checked(key, await self._io(ledger.get, key), inp)
                    continue  # it changed meanwhile: look again
            elif time.time() >= entry.since + timeout:
                return RowResult(
                    None,
                    "unknown",
                    error=f"row {key}: its submit (by another worker) has no recorded outcome "
                    f"after {timeout:g} s; a task may exist, not re-sent",
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
            entry = self._checked(key, await self._io(ledger.get, key), inp)
        if entry.state == "unknown":
            return RowResult(None, "unknown", error=entry.error or "submit outcome unknown")
        task_id = entry.task_id
        if task_id is None:  # pragma: no cover - every other state has a task id
            return RowResult(None, entry.state, error=entry.error or "")
        if entry.final and entry.verified and (entry.state == "failed" or not self._wants_files()):
            if self._proven(key, entry):
                status, error = entry.state, entry.error or ""
                return RowResult(task_id, status, list(entry.outputs), error)
            log.warning(
                "row %s: its result in the ledger is not signed with this account's key; "
                "asked the API for task %s instead",
                key,
                task_id,
            )
        return await self._poll(client, key, entry, task_id, stamp)

    async def _poll(
        self, client: Client, key: str, entry: Entry, task_id: str, stamp: Stamp
    ) -> RowResult:
        """A row's recorded task, asked of the API.

        An entry of an earlier version is never answered from the ledger alone: its task
        must be this account's and this model's.
        """
        try:
            pred = await client.wait(task_id)
        except NotFoundError as exc:
            if entry.verified:
                return await self._settle(client, key, stamp, task_id, None, exc)
            return RowResult(
                task_id,
                "unknown",
                error=f"row {key}: its entry (of an earlier version) names task "
                f"{task_id}, which this account does not know; not used, not re-sent "
                "(delete the row to run it again)",
            )
        except WaveSpeedError as exc:
            return await self._settle(client, key, stamp, task_id, None, exc)
        if not entry.verified and pred.model and pred.model != self._o.model:
            where = self._ledger.location if self._ledger is not None else ""
            raise LedgerError(
                f"ledger {where}: row {key!r} names task {task_id} of model "
                f"{pred.model!r}, not {self._o.model!r}: a row key must stand for one job",
                location=where,
            )
        return await self._settle(client, key, stamp, task_id, pred, None)

    def _wants_files(self) -> bool:
        return self._o.download is not None or self._o.download_bytes
