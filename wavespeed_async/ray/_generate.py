"""The worker behind :func:`wavespeed_async.ray.generate`: one per Ray actor.

It turns a batch of rows (an Arrow table) into the same table plus ``task_id``, ``status``,
``outputs``, ``error`` and ``cost_usd`` columns. It needs nothing from Ray itself: Ray
Data constructs it in an actor and awaits ``__call__`` on the event loop it runs for async
callables, and the one Client of the actor is opened on that loop on first use.

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
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from wavespeed_async._core.errors import (
    LedgerError,
    SubmitSkipped,
    WaveSpeedError,
)
from wavespeed_async._core.secret import SigningKey
from wavespeed_async._core.settings import (
    CatalogConfig,
    FlowLimits,
    PollConfig,
    RetryConfig,
    Timeouts,
)
from wavespeed_async._facade.client import Client
from wavespeed_async.jobs.ledger import (
    Ledger,
    new_owner,
    open_ledger,
)
from wavespeed_async.ray._follow import Following, RowResult, input_hash

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "OUTPUT_COLUMNS",
    "GenerateOptions",
    "GenerateWorker",
    "input_hash",
    "model_input",
    "row_key",
]

log = logging.getLogger("wavespeed_async")

#: Columns added to every row (plus ``files`` / ``images`` when downloading).
OUTPUT_COLUMNS = ("task_id", "status", "outputs", "error", "cost_usd")
#: ``cost_usd``'s Arrow type: exact decimal USD, to the nano-dollar.
COST_SCALE = 9


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """Everything a worker needs, sent to each actor, with no credentials.

    The key is read from ``$WAVESPEED_API_KEY`` in the actor's process; a ``share`` or
    ``ledger`` URL's password is hidden from its repr.
    """

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
    """The model's input for one row: every column but the key column, or the picked ones.

    ``(column, field)`` pairs rename; null values are left out.
    """
    if columns is None:
        pairs = [(name, name) for name in row if name != key]
    else:
        pairs = [(c, c) if isinstance(c, str) else c for c in columns]
    return {fld: row[col] for col, fld in pairs if row.get(col) is not None}


def row_key(model: str, inp: Mapping[str, Any]) -> str:
    """The default row key: a hash of the model and the input (independent of key order)."""
    blob = msgspec.json.encode([model, inp], order="sorted")
    return hashlib.sha256(blob).hexdigest()[:32]


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


class GenerateWorker(Following):
    """An async callable class for ``Dataset.map_batches`` (``batch_format="pyarrow"``)."""

    def __init__(self, options: GenerateOptions) -> None:
        self._o = options
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ledger: Ledger | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._opening: anyio.Lock | None = None
        self._account = ""
        self._signer = SigningKey(os.urandom(32))  # until opened: proves nothing

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
            self._account = client.account_fingerprint
            self._signer = client.signing_key("wavespeed-async ledger v1")
            if o.ledger is not None and self._ledger is None:
                # First: if it cannot be opened, no batch of this worker runs without it.
                self._ledger = await self._io(
                    open_ledger, o.ledger, o.ledger_namespace, account=self._account
                )
            # Opened on the loop Ray runs this callable on, and kept for every batch.
            await client.__aenter__()
            self._client = client
            self._loop = asyncio.get_running_loop()
            cap = o.limits.max_in_flight if o.share is None else None
            self._slots = anyio.CapacityLimiter(min(o.concurrency, cap or o.concurrency))
        return self._client

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
        costs = await _costs(client, out)
        table = table.append_column(
            "cost_usd", pa.array(costs, pa.decimal128(38 - COST_SCALE, COST_SCALE))
        )
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
                entry = None
                if ledger is not None:
                    entry = self._checked(key, await self._io(ledger.get, key), inp)
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
        """Submit ``rows`` through ``run_many``, each claimed by ``owner`` as it is pulled.

        ``held``: the claims are ``owner``'s already. Each row is moved to ``submitting``
        just before each send of its request (and back to ``claimed`` after an answer that
        proves no task was created); a row another worker holds is followed instead.
        """
        slots, ledger = self._limiter(), self._ledger
        keys: list[str] = []  # run_many index -> row key
        inputs: list[dict[str, Any]] = []
        tokens: list[object] = []
        unsent: set[str] = set()  # claimed here, not sent, no result delivered yet

        async def pulled() -> AsyncIterator[dict[str, Any]]:
            for key, inp in rows:
                token = object()
                await slots.acquire_on_behalf_of(token)
                other = None
                if ledger is not None and not held:
                    other = await self._io(ledger.claim, key, owner, self._stamp(inp))
                if other is not None:  # someone else has it: follow theirs
                    slots.release_on_behalf_of(token)
                    other = self._checked(key, other, inp)
                    tg.start_soon(self._resume, client, key, inp, other, results, tg)
                    continue
                keys.append(key)
                inputs.append(inp)
                tokens.append(token)
                unsent.add(key)
                yield inp

        async def submitting(index: int) -> bool:
            # The compare-and-set: send only while the claim is still this worker's.
            key = keys[index]
            sent = ledger is None or await self._io(ledger.mark_submitting, key, owner=owner)
            unsent.discard(key)
            return sent

        async def not_sent(index: int) -> None:
            # Nothing was created: the row is claimed again while it waits to be re-sent,
            # so a worker that dies meanwhile leaves it to be taken over, not "unknown".
            key = keys[index]
            if ledger is not None and await self._io(ledger.mark_not_sent, key, owner=owner):
                unsent.add(key)

        unrecorded: list[LedgerError] = []
        stop = anyio.CancelScope()

        async def created(index: int, task_id: str) -> None:
            if ledger is None:
                return
            try:
                await self._io(ledger.mark_created, keys[index], task_id)
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
                    on_not_sent=not_sent,
                ) as batch:
                    async for r in batch:
                        key = keys[r.index]
                        unsent.discard(key)
                        try:
                            if isinstance(r.error, LedgerError):
                                raise r.error
                            if isinstance(r.error, SubmitSkipped) and ledger is not None:
                                # Taken over while it waited for its turn: follow the new owner.
                                entry = await self._io(ledger.get, key)
                                tg.start_soon(
                                    self._resume, client, key, inputs[r.index], entry, results, tg
                                )
                                continue
                            stamp = self._stamp(inputs[r.index])
                            results[key] = await self._settle(
                                client, key, stamp, r.id, r.prediction, r.error, owner
                            )
                        finally:
                            slots.release_on_behalf_of(tokens[r.index])
            if unrecorded:
                raise unrecorded[0]
        finally:
            # Rows claimed and never sent (the block failed or was cancelled while they
            # waited): release them, so that a retry sends them at once.
            if ledger is not None and unsent:
                with anyio.CancelScope(shield=True):
                    for key in unsent:
                        try:
                            await self._io(ledger.release, key, owner)
                        except LedgerError as exc:
                            log.warning("%s", exc)


async def _costs(client: Client, rows: list[RowResult]) -> list[Decimal | None]:
    """Each row's net cost from the billing records (one search per 100 tasks).

    0 for a row that created no task; ``None`` when unknown (no record yet, or the search
    failed).
    """
    ids = [r.task_id for r in rows if r.task_id is not None]
    found = {}
    if ids:
        try:
            found = await client.costs(ids)
        except WaveSpeedError as exc:
            log.warning("the rows' costs could not be read (%s); cost_usd is null", exc)
    quantum = Decimal(1).scaleb(-COST_SCALE)
    out: list[Decimal | None] = []
    for r in rows:
        cost = found.get(r.task_id) if r.task_id is not None else None
        if r.task_id is None:
            out.append(Decimal(0) if r.status == "refused" else None)
        else:
            out.append(cost.net_usd.quantize(quantum) if cost is not None and cost.known else None)
    return out


def columns_option(
    columns: Sequence[str] | Mapping[str, str] | None,
) -> tuple[str, ...] | tuple[tuple[str, str], ...] | None:
    """Normalise the ``columns`` option to a hashable, picklable form."""
    if columns is None:
        return None
    if isinstance(columns, Mapping):
        return tuple((str(k), str(v)) for k, v in columns.items())
    return tuple(str(c) for c in columns)
