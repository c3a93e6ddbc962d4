"""Bulk generation as one step of a Ray Data pipeline (``pip install 'wavespeed-async[ray]'``).

::

    import ray
    from wavespeed_async.ray import generate

    ds = ray.data.read_parquet("prompts/")
    out = generate(ds, model="wavespeed-ai/flux-kontext-pro/text-to-image",
                   actors=8, concurrency=64, ledger="redis://redis:6379/0")
    out.write_parquet("images/")

Each row's columns are the model's input; the output keeps them and adds ``task_id``,
``status``, ``outputs`` and ``error``. A ledger (a local folder, or a Redis URL for many
machines) records each row's task the moment it exists, so a worker's death, a retried block
or a re-run of the whole pipeline never submits (and bills) a row twice; and it records a row
as sent only just before its request goes out, so the rows a dead worker held back for the
account's limits are sent by the next attempt, not reported ``unknown``. See ``docs/ray.md``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wavespeed_async._core.install import install_command

try:
    import ray
except ImportError as _exc:
    raise ModuleNotFoundError(
        f"wavespeed_async.ray needs Ray Data ({_exc}); install it with: {install_command('ray')}",
        name=_exc.name,
    ) from _exc

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.secret import masked_url
from wavespeed_async._core.settings import (
    CatalogConfig,
    FlowLimits,
    PollConfig,
    RetryConfig,
    Timeouts,
)
from wavespeed_async._facade.client import Client
from wavespeed_async.jobs.ledger import is_url
from wavespeed_async.ray._generate import (
    OUTPUT_COLUMNS,
    GenerateOptions,
    GenerateWorker,
    columns_option,
    model_input,
    row_key,
)

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["OUTPUT_COLUMNS", "generate", "model_input", "row_key"]


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(name, f"{name}: {value!r} is not allowed; allowed: an integer >= 1")
    return value


#: Where each actor reads the API key (never passed through Ray's object store).
_KEY = "WAVESPEED_API_KEY"


def _key_reaches_actors() -> bool:
    """Whether the actors will find an API key.

    It is set in this driver's environment (a local ``ray.init()`` hands it to its
    workers), or in the job's ``runtime_env``.
    """
    if os.environ.get(_KEY, "").strip():
        return True
    if not ray.is_initialized():
        return False
    env_vars = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
    return bool(str(env_vars.get(_KEY, "")).strip())


def generate(
    ds: Dataset,
    *,
    model: str,
    actors: int = 2,
    concurrency: int = 32,
    share: str | None = None,
    ledger: str | os.PathLike[str] | None = None,
    ledger_namespace: str | None = None,
    columns: Sequence[str] | Mapping[str, str] | None = None,
    key: str | None = None,
    download: str | os.PathLike[str] | None = None,
    download_bytes: bool = False,
    base_url: str | None = None,
    limits: FlowLimits | None = None,
    poll: PollConfig | None = None,
    retry: RetryConfig | None = None,
    timeouts: Timeouts | None = None,
    catalog: CatalogConfig | None = None,
    batch_size: int = 64,
    num_cpus: float = 0.25,
    claim_timeout_s: float = 300.0,
) -> Dataset:
    """Add a WaveSpeed generation step to ``ds``: one task per row, under an actor pool.

    Args:
        ds: The rows; by default every column is a model input (nulls are left out).
        model: The model path, e.g. ``"wavespeed-ai/flux-kontext-pro/text-to-image"``.
        actors: Actors in the pool (one Client each).
        concurrency: Rows in progress at once per actor (submitted and not yet ended),
            across all the batches the actor runs; without ``share``, at most the actor's
            share of ``limits.max_in_flight``.
        share: Account-wide limits shared through Redis (a URL), passed to each actor's
            ``Client(share=...)``: every actor then uses ``limits`` as the account's.
            Without it, each actor takes ``limits.split(actors)``.
        ledger: Where rows' tasks are recorded: a folder (SQLite, the actors of one
            machine) or a Redis URL (``redis://...``, every machine). ``None``: no ledger;
            a retried block or a re-run submits its rows again.
        ledger_namespace: The Redis hash of the ledger (default one per account:
            ``wavespeed-async:ledger:<hash of the API key and base URL>``).
        columns: The input columns: a list picks them, a mapping ``{column: field}`` picks
            and renames them. Default: every column but ``key``.
        key: A column holding a stable, unique row key. Default: a hash of the model and
            the row's input, so identical rows share one task.
        download: A folder to save outputs to (``<key>_<n>.png``); adds a ``files`` column.
        download_bytes: Add an ``images`` column with each output's bytes, for the next
            stage of the pipeline.
        base_url: The API (default ``$WAVESPEED_BASE_URL`` of this process, else the real
            API). The key is read from ``$WAVESPEED_API_KEY`` in each actor's process:
            set it on every node, or through ``ray.init(runtime_env=...)``.
        limits: The account's limits (default ``FlowLimits()``).
        poll, retry, timeouts: Each actor's Client settings.
        catalog: How each actor's Client checks rows against the model catalogue before
            sending them (default ``CatalogConfig()``: on, failing open); a refused row
            is ``refused``, its error naming the field.
        batch_size: Rows handed to an actor at a time.
        num_cpus: CPUs each actor asks Ray for: a fraction, since the work is waiting on
            the network.
        claim_timeout_s: How long a row another worker holds with no task id yet is
            watched. A row it *claimed* and has not sent (it waits for the limits) is
            then taken over and sent here; at once when that worker's process, on this
            host, has died. A row whose submit it *sent* is then reported ``unknown``
            (a task may exist), never sent again.

    Returns:
        A lazy Dataset with the input columns unchanged plus ``task_id``, ``status``
        (``completed``, ``failed``, ``pending``: the task still runs, ``unknown``: a
        submit without an answer, ``refused``: no task was created), ``outputs`` (list
        of URLs) and ``error`` (``""`` for a completed row).

    Raises:
        ValidationError: an option is out of range, or no API key would reach the actors
            (``$WAVESPEED_API_KEY`` is set neither here nor in the ``runtime_env``),
            before anything runs.

    A ledger that cannot be read or written fails the block with a
    :class:`~wavespeed_async.LedgerError` naming it; Ray Data then ends the pipeline with
    that error, unless told to retry failed blocks (see ``docs/ray.md``).
    """
    # URLs masked first: no traceback's locals (nor a repr of the options) show a password.
    if isinstance(share, str):
        share = masked_url(share)
    if isinstance(ledger, str) and is_url(ledger):
        ledger = masked_url(ledger)
    if not isinstance(model, str) or model.count("/") < 1:
        raise ValidationError(
            "model", f"model: {model!r} is not allowed; allowed: a path like 'owner/model'"
        )
    _positive_int("actors", actors)
    _positive_int("concurrency", concurrency)
    _positive_int("batch_size", batch_size)
    if not num_cpus > 0:
        raise ValidationError("num_cpus", f"num_cpus: {num_cpus!r}; allowed: a number > 0")
    if not claim_timeout_s > 0:
        raise ValidationError(
            "claim_timeout_s", f"claim_timeout_s: {claim_timeout_s!r}; allowed: a number > 0"
        )
    if share is not None and not isinstance(share, str):
        raise ValidationError(
            "share", "share: allowed: a redis:// URL (each actor opens its own connection)"
        )
    if share is not None and "share" not in inspect.signature(Client).parameters:
        raise ValidationError(
            "share", "share: this wavespeed-async has no shared limits (Client(share=...))"
        )
    if key is not None and columns is not None:
        picked = columns.keys() if isinstance(columns, Mapping) else columns
        if key in picked:
            raise ValidationError("key", f"key: {key!r} is also an input column")
    schema = ds.schema(fetch_if_missing=False)  # known without running anything, or None
    if schema is not None:
        added = (*OUTPUT_COLUMNS, "files", "images")
        clash = [name for name in schema.names if name in added]
        if clash:
            raise ValidationError(
                "ds", f"ds: the dataset already has column(s) {clash}; rename them first"
            )
        if key is not None and key not in schema.names:
            raise ValidationError("key", f"key: the dataset has no column {key!r}")
    if not _key_reaches_actors():
        # Checked here: an actor without a key fails only once the pipeline runs, deep
        # inside Ray's own error report.
        raise ValidationError(
            "api_key",
            f"api_key: ${_KEY} is not set in this driver's environment nor in "
            "ray.init(runtime_env={'env_vars': {...}}); each actor reads the key from its "
            f"environment: export {_KEY} before ray.init() (a local Ray passes the "
            "driver's environment to its workers) or pass it in runtime_env. For the "
            "built-in emulator any key works (point base_url at it too)",
        )
    account = limits or FlowLimits()
    location: str | None = None
    if ledger is not None:
        location = os.fspath(ledger)
        location = masked_url(location) if is_url(location) else str(Path(location).resolve())
    options = GenerateOptions(
        model=model,
        concurrency=concurrency,
        limits=account if share is not None else account.split(actors),
        columns=columns_option(columns),
        key=key,
        base_url=base_url or os.environ.get("WAVESPEED_BASE_URL") or None,
        share=share,
        ledger=location,
        ledger_namespace=ledger_namespace,
        download=None if download is None else str(Path(download).resolve()),
        download_bytes=download_bytes,
        poll=poll,
        retry=retry,
        timeouts=timeouts,
        catalog=catalog,
        claim_timeout_s=claim_timeout_s,
    )
    return ds.map_batches(
        GenerateWorker,
        fn_constructor_kwargs={"options": options},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        batch_size=batch_size,
        batch_format="pyarrow",
    )
