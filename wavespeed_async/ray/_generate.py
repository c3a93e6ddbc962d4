"""The worker behind :func:`wavespeed_async.ray.generate`: one per Ray actor.

It turns a batch of rows (an Arrow table) into the same table plus ``task_id``, ``status``,
``outputs`` and ``error`` columns. It needs nothing from Ray itself: Ray Data constructs it
in an actor and awaits ``__call__`` on the event loop it runs for async callables, and the
one Client of the actor is opened on that loop on first use.

Per row key (see :mod:`wavespeed_async.jobs.ledger`):

* a key the ledger does not know is claimed (``claimed``) as ``Client.run_many`` pulls the
  row, and moved to ``submitting`` from ``run_many``'s ``on_submitting`` hook, after the
  Client's limits let it go and just before its request is sent; if the claim was taken
  over meanwhile, the hook declines the submit and the row follows the new owner;
* a key with a task id is polled, or answered from the ledger when its result is there;
* a key another worker holds as ``claimed`` (nothing sent) is watched, and taken over and
  submitted here once its owner is known dead (a process of this host that is gone) or has
  held it for ``claim_timeout_s``;
* a key another worker moved to ``submitting`` is watched until it has a task id, or
  reported ``unknown`` after ``claim_timeout_s``: its request may have reached the API, so
  it is never sent again.

Rows claimed and not yet sent when a batch fails or is cancelled are released. A ledger
that cannot be read or written raises :class:`~wavespeed_async.LedgerError`, which fails
the block: Ray Data's own handling of a failed block then applies.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from wavespeed_async._core.errors import (
    LedgerError,
    SubmissionOutcomeUnknown,
    SubmitSkipped,
    TaskFailedError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.settings import (
    CatalogConfig,
    FlowLimits,
    PollConfig,
    RetryConfig,
    Timeouts,
)
from wavespeed_async._facade.client import Client
from wavespeed_async.jobs.ledger import Entry, Ledger, new_owner, open_ledger, owner_gone

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["OUTPUT_COLUMNS", "GenerateOptions", "GenerateWorker", "model_input", "row_key"]

log = logging.getLogger("wavespeed_async")

#: Columns added to every row (plus ``files`` / ``images`` when downloading).
OUTPUT_COLUMNS = ("task_id", "status", "outputs", "error")

_SAFE_STEM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """Everything a worker needs, sent to each actor (no credentials: the key is read from
    ``$WAVESPEED_API_KEY`` in the actor's process)."""

    model: str
    concurrency: int
    limits: FlowLimits
    columns: tuple[str, ...] | tuple[tuple[str, str], ...] | None = None
    key: str | None = None
    base_url: str | None = None
    share: Any = None
    ledger: str | None = None
    ledger_namespace: str | None = None
    download: str | None = None
    download_bytes: bool = False
    poll: PollConfig | None = None
    retry: RetryConfig | None = None
    timeouts: Timeouts | None = None
    catalog: CatalogConfig | None = None
    claim_timeout_s: float = 300.0


def model_input(
    row: Mapping[str, Any],
    columns: tuple[str, ...] | tuple[tuple[str, str], ...] | None,
    key: str | None,
) -> dict[str, Any]:
    """The model's input for one row: every column but the key column, or the picked ones
    (``(column, field)`` pairs rename); null values are left out."""
    if columns is None:
        pairs = [(name, name) for name in row if name != key]
    else:
        pairs = [(c, c) if isinstance(c, str) else c for c in columns]
    return {fld: row[col] for col, fld in pairs if row.get(col) is not None}


def row_key(model: str, inp: Mapping[str, Any]) -> str:
    """The default row key: a hash of the model and the input (independent of key order)."""
    blob = msgspec.json.encode([model, inp], order="sorted")
    return hashlib.sha256(blob).hexdigest()[:32]


def file_stem(key: str) -> str:
    """A file name for a row key: the key itself when it is plain, else its hash."""
    if 0 < len(key) <= 100 and set(key) <= _SAFE_STEM and not key.startswith("."):
        return key
    return hashlib.sha256(key.encode()).hexdigest()[:32]


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


def _ledger_error(exc: BaseException) -> LedgerError | None:
    """The first LedgerError in ``exc`` (an exception group's leaves included)."""
    if isinstance(exc, LedgerError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _ledger_error(inner)
        if found is not None:
            return found
    return None


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _outputs(pred: Prediction) -> list[str]:
    return [o if isinstance(o, str) else msgspec.json.encode(o).decode() for o in pred.outputs]


class GenerateWorker:
    """An async callable class for ``Dataset.map_batches`` (``batch_format="pyarrow"``)."""

    def __init__(self, options: GenerateOptions) -> None:
        self._o = options
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ledger: Ledger | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._opening: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"<GenerateWorker {self._o.model}>"

    async def _open(self) -> Client:
        if self._client is not None:
            return self._client
        # Ray runs several batches of an actor at once: one of them opens the Client.
        if self._opening is None:
            self._opening = anyio.Lock()
        async with self._opening:
            return await self._open_locked()

    async def _open_locked(self) -> Client:
        if self._client is None:
            o = self._o
            if o.ledger is not None and self._ledger is None:
                # First: if it cannot be opened, no batch of this worker runs without it.
                self._ledger = open_ledger(o.ledger, o.ledger_namespace)
            extra: dict[str, Any] = {} if o.share is None else {"share": o.share}
            client = Client(
                base_url=o.base_url,
                limits=o.limits,
                poll=o.poll,
                retry=o.retry,
                timeouts=o.timeouts,
                catalog=o.catalog,
                **extra,
            )
            # Opened on the loop Ray runs this callable on, and kept for every batch.
            await client.__aenter__()
            self._client = client
            self._loop = asyncio.get_running_loop()
            cap = o.limits.max_in_flight if o.share is None else None
            self._slots = anyio.CapacityLimiter(min(o.concurrency, cap or o.concurrency))
        return self._client

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._slots is None:  # pragma: no cover - _open() runs first
            raise RuntimeError("the worker is not open")
        return self._slots

    def __del__(self) -> None:
        # Ray Data drops the worker when the pool shuts down gracefully: close the pool of
        # connections on the loop it belongs to (a killed actor skips this, harmlessly).
        client, loop = self._client, self._loop
        try:
            if (
                client is not None
                and not client.closed
                and loop is not None
                and loop.is_running()
                and not _on_loop(loop)
            ):
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
            if self._ledger is not None:
                self._ledger.close()
        except Exception:  # noqa: S110 - nothing useful to do while being collected
            pass

    async def __call__(self, batch: pa.Table) -> AsyncIterator[pa.Table]:
        # An async generator: the form of async callable that Ray Data has run longest.
        import pyarrow as pa

        o = self._o
        clash = [c for c in (*OUTPUT_COLUMNS, "files", "images") if c in batch.column_names]
        if clash:
            raise ValueError(f"the dataset already has column(s) {clash}; rename them first")
        client = await self._open()
        rows = batch.to_pylist()
        if o.key is not None and o.key not in batch.column_names:
            raise ValueError(f"key: the dataset has no column {o.key!r}")
        inputs = [model_input(r, o.columns, o.key) for r in rows]
        keys = [
            (None if r[o.key] is None else str(r[o.key]))
            if o.key is not None
            else row_key(o.model, inp)
            for r, inp in zip(rows, inputs, strict=True)
        ]
        unique = {k: inp for k, inp in zip(keys, inputs, strict=True) if k is not None}
        try:
            results = await self._run(client, unique)
        except Exception as exc:
            # A ledger that failed fails the block, as itself (not inside a task group's
            # exception group): the rows it could not record are not sent.
            found = _ledger_error(exc)
            if found is None or found is exc:
                raise
            raise found from found.__cause__  # the store's own error
        no_key = RowResult(None, "refused", error=f"key: the row's {o.key!r} column is null")
        out = [no_key if k is None else results[k] for k in keys]
        table = batch
        table = table.append_column("task_id", pa.array([r.task_id for r in out], pa.string()))
        table = table.append_column("status", pa.array([r.status for r in out], pa.string()))
        table = table.append_column(
            "outputs", pa.array([r.outputs for r in out], pa.list_(pa.string()))
        )
        table = table.append_column("error", pa.array([r.error for r in out], pa.string()))
        if o.download is not None:
            table = table.append_column(
                "files", pa.array([r.files for r in out], pa.list_(pa.string()))
            )
        if o.download_bytes:
            table = table.append_column(
                "images", pa.array([r.images for r in out], pa.list_(pa.binary()))
            )
        yield table

    async def _run(self, client: Client, todo: dict[str, dict[str, Any]]) -> dict[str, RowResult]:
        results: dict[str, RowResult] = {}
        fresh: list[tuple[str, dict[str, Any]]] = []
        ledger = self._ledger
        async with anyio.create_task_group() as tg:
            for key, inp in todo.items():
                entry = ledger.get(key) if ledger is not None else None
                if entry is None:
                    fresh.append((key, inp))
                else:
                    tg.start_soon(self._resume, client, key, inp, entry, results, tg)
            if fresh:
                await self._submit(client, fresh, results, tg, new_owner(), held=False)
        return results

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
        """Submit ``rows`` through ``run_many``, each claimed by ``owner`` as it is pulled
        (``held``: the claims are ``owner``'s already) and moved to ``submitting`` just
        before its request is sent; a row another worker holds is followed instead."""
        slots, ledger = self._limiter(), self._ledger
        keys: list[str] = []  # run_many index -> row key
        inputs: list[dict[str, Any]] = []
        tokens: list[object] = []
        unsent: set[str] = set()  # claimed here, not sent, no result delivered yet

        async def pulled() -> AsyncIterator[dict[str, Any]]:
            for key, inp in rows:
                token = object()
                await slots.acquire_on_behalf_of(token)
                other = ledger.claim(key, owner) if ledger is not None and not held else None
                if other is not None:  # someone else has it: follow theirs
                    slots.release_on_behalf_of(token)
                    tg.start_soon(self._resume, client, key, inp, other, results, tg)
                    continue
                keys.append(key)
                inputs.append(inp)
                tokens.append(token)
                unsent.add(key)
                yield inp

        def submitting(index: int) -> bool:
            # The compare-and-set: send only while the claim is still this worker's.
            sent = ledger is None or ledger.submitting(keys[index], owner)
            unsent.discard(keys[index])
            return sent

        unrecorded: list[LedgerError] = []
        stop = anyio.CancelScope()

        def created(index: int, task_id: str) -> None:
            if ledger is None:
                return
            try:
                ledger.created(keys[index], task_id)
            except LedgerError as exc:
                # A task the ledger does not know: a later run could not find it. End the
                # block now with the error naming it, rather than poll it unrecorded.
                unrecorded.append(exc)
                stop.cancel()

        try:
            with stop:
                async with client.run_many(
                    self._o.model,
                    pulled(),
                    concurrency=min(self._o.concurrency, len(rows)),
                    on_task_created=created,
                    on_submitting=submitting,
                ) as batch:
                    async for r in batch:
                        key = keys[r.index]
                        unsent.discard(key)
                        try:
                            if isinstance(r.error, LedgerError):
                                raise r.error
                            if isinstance(r.error, SubmitSkipped) and ledger is not None:
                                # Taken over while it waited for its turn: follow the new owner.
                                entry = ledger.get(key)
                                tg.start_soon(
                                    self._resume, client, key, inputs[r.index], entry, results, tg
                                )
                                continue
                            results[key] = await self._settle(
                                client, key, r.id, r.prediction, r.error, owner
                            )
                        finally:
                            slots.release_on_behalf_of(tokens[r.index])
            if unrecorded:
                raise unrecorded[0]
        finally:
            # Rows claimed and never sent (the block failed or was cancelled while they
            # waited): release them, so that a retry sends them at once.
            if ledger is not None:
                for key in unsent:
                    try:
                        ledger.release(key, owner)
                    except LedgerError as exc:
                        log.warning("%s", exc)

    async def _settle(
        self,
        client: Client,
        key: str,
        task_id: str | None,
        pred: Prediction | None,
        error: WaveSpeedError | None,
        owner: str | None = None,
    ) -> RowResult:
        """Record one submitted row's outcome in the ledger; download its outputs."""
        ledger = self._ledger
        if error is None and pred is not None:
            if ledger is not None:
                ledger.finished(key, pred.id, "completed", _outputs(pred), None)
            return await self._completed(client, key, pred)
        message = str(error)
        if isinstance(error, TaskFailedError):
            if ledger is not None:
                ledger.finished(key, task_id, "failed", [], message)
            return RowResult(task_id, "failed", error=message)
        if task_id is None and isinstance(error, SubmissionOutcomeUnknown):
            if ledger is not None:
                ledger.unknown(key, message)
            return RowResult(None, "unknown", error=message)
        if task_id is None:  # refused before any task existed: a later run may try again
            if ledger is not None and owner is not None:
                ledger.release(key, owner)
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
        """A key the ledger knows: followed; submitted here only once this worker holds
        its claim (taken over, or claimed afresh after a release)."""
        async with self._limiter():
            outcome = await self._follow(client, key, entry)
        if isinstance(outcome, RowResult):
            results[key] = outcome
        else:
            await self._submit(client, [(key, inp)], results, tg, outcome.owner, held=True)

    async def _follow(self, client: Client, key: str, entry: Entry | None) -> RowResult | _Held:
        ledger = self._ledger
        if ledger is None:  # pragma: no cover - only rows of a ledger are followed
            raise RuntimeError("no ledger to follow a row in")
        timeout = self._o.claim_timeout_s
        delay = 0.05
        while entry is None or entry.state in ("claimed", "submitting"):
            if entry is None:  # released (refused, or never sent): claim it afresh
                owner = new_owner()
                entry = ledger.claim(key, owner)
                if entry is None:
                    return _Held(owner)
                continue
            if entry.state == "claimed":
                # Nothing was sent: take it over when its owner has died, or has held it
                # for claim_timeout_s. Safe either way: the old owner's move to
                # submitting fails once the claim is no longer its.
                if owner_gone(entry.owner) or time.time() >= entry.claimed_at + timeout:
                    owner = new_owner()
                    if ledger.take_over(key, owner, entry):
                        log.info("row %s: took over the claim of %s", key, entry.owner)
                        return _Held(owner)
                    entry = ledger.get(key)  # it changed meanwhile: look again
                    continue
            elif time.time() >= entry.since + timeout:
                return RowResult(
                    None,
                    "unknown",
                    error=f"row {key}: its submit (by another worker) has no recorded outcome "
                    f"after {timeout:g} s; a task may exist, not re-sent",
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
            entry = ledger.get(key)
        if entry.state == "unknown":
            return RowResult(None, "unknown", error=entry.error or "submit outcome unknown")
        if entry.task_id is None:  # pragma: no cover - every other state has a task id
            return RowResult(None, entry.state, error=entry.error or "")
        if entry.final and (entry.state == "failed" or not self._wants_files()):
            status, error = entry.state, entry.error or ""
            return RowResult(entry.task_id, status, list(entry.outputs), error)
        try:
            pred = await client.wait(entry.task_id)
        except WaveSpeedError as exc:
            return await self._settle(client, key, entry.task_id, None, exc)
        return await self._settle(client, key, entry.task_id, pred, None)

    def _wants_files(self) -> bool:
        return self._o.download is not None or self._o.download_bytes


def columns_option(
    columns: Sequence[str] | Mapping[str, str] | None,
) -> tuple[str, ...] | tuple[tuple[str, str], ...] | None:
    """Normalise the ``columns`` option to a hashable, picklable form."""
    if columns is None:
        return None
    if isinstance(columns, Mapping):
        return tuple((str(k), str(v)) for k, v in columns.items())
    return tuple(str(c) for c in columns)
