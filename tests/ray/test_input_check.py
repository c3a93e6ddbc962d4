"""Rows checked against the model catalogue in each actor before they are billed (no Ray).

The check is the actor's Client's (in ``submit``): a refused row is ``refused`` with the
field in its error, its ledger claim is released so that a corrected re-run may send it,
and the actor fetched the catalogue once for every batch it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import CatalogConfig, FlowLimits
from wavespeed_async.emulator import Emulator
from wavespeed_async.jobs.ledger import SqliteLedger
from wavespeed_async.ray._generate import GenerateOptions, GenerateWorker, row_key

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

pa = pytest.importorskip("pyarrow", reason="the ray extra is not installed")

LORA = "wavespeed-ai/flux-dev-lora"


def worker(emu: Emulator, ledger: Path, **extra: Any) -> GenerateWorker:
    options: dict[str, Any] = {
        "model": LORA,
        "concurrency": 8,
        "limits": FlowLimits().split(2),
        "base_url": emu.base_url,
        "ledger": str(ledger),
        "poll": fast_poll(),
        "retry": fast_retry(),
        **extra,
    }
    return GenerateWorker(GenerateOptions(**options))


async def call(w: GenerateWorker, table: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async for out in w(table):
        rows.extend(out.to_pylist())
    return rows


async def test_rows_the_catalogue_refuses_are_refused_with_their_field_and_never_billed(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, tmp_path, columns=("prompt", "guidence_scale", "num_images"))
    first = pa.table(
        {
            "prompt": ["fine", "typo", "too many", "also fine"],
            "guidence_scale": [None, 3.0, None, None],
            "num_images": [1, 1, 9, 2],
        }
    )
    second = pa.table({"prompt": ["later"], "guidence_scale": [None], "num_images": [1]})
    try:
        async with anyio.create_task_group() as tg:  # two batches of one actor at once
            results: list[list[dict[str, Any]]] = [[], []]

            async def run(i: int, table: Any) -> None:
                results[i] = await call(w, table)

            tg.start_soon(run, 0, first)
            tg.start_soon(run, 1, second)
        assert w._client is not None and w._client._input_checks is not None
        fetches = w._client._input_checks.cache.fetches
    finally:
        if w._client is not None:
            await w._client.aclose()
        if w._ledger is not None:
            w._ledger.close()
    rows = results[0]
    assert [r["status"] for r in rows] == ["completed", "refused", "refused", "completed"]
    assert results[1][0]["status"] == "completed"
    assert "guidence_scale: not a field of" in rows[1]["error"]
    assert "did you mean 'guidance_scale'?" in rows[1]["error"]
    assert rows[2]["error"].startswith("num_images: 9 is above")
    assert rows[1]["task_id"] is None and rows[2]["task_id"] is None
    assert fetches == 1  # one catalogue for every batch of the actor
    stats = emulator.stats()
    assert stats.tasks_created == 3 and stats.submits_received == 3
    assert stats.inputs_dropped == {}
    book = SqliteLedger.open(tmp_path)
    try:  # released: a corrected re-run sends them
        assert (
            book.get(row_key(LORA, {"prompt": "typo", "guidence_scale": 3.0, "num_images": 1}))
            is None
        )
    finally:
        book.close()


async def test_a_strict_catalogue_refuses_rows_of_a_model_it_does_not_list(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, tmp_path, model="acme/unlisted", catalog=CatalogConfig(check="strict"))
    try:
        (row,) = await call(w, pa.table({"prompt": ["x"]}))
    finally:
        if w._client is not None:
            await w._client.aclose()
        if w._ledger is not None:
            w._ledger.close()
    assert row["status"] == "refused"
    assert "acme/unlisted not sent: the model catalogue does not list it" in row["error"]
    assert emulator.stats().submits_received == 0
