"""The ledger's claims, and the worker's handling of them, without Ray (fast)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import RedisServer
from wavespeed_async import Client, FlowLimits, ValidationError
from wavespeed_async._generate import GenerateOptions, GenerateWorker, model_input, row_key
from wavespeed_async._ledger import Ledger, RedisLedger, SqliteLedger
from wavespeed_async.emulator import Emulator

pa = pytest.importorskip("pyarrow", reason="the ray extra is not installed")

MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"


@pytest.fixture(params=["folder", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    book: Ledger
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        book = RedisLedger(server.url, "test-ledger")
    else:
        book = SqliteLedger.open(tmp_path)
    yield book
    book.close()


def test_a_key_is_claimed_once_and_then_shows_its_owner(ledger: Ledger) -> None:
    assert ledger.claim("k", "worker-a") is None
    other = ledger.claim("k", "worker-b")
    assert other is not None and other.state == "submitting" and other.owner == "worker-a"
    assert other.task_id is None and abs(other.claimed_at - time.time()) < 60


def test_a_key_moves_to_created_then_finished_keeping_its_task(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.created("k", "t1")
    entry = ledger.get("k")
    assert entry is not None and (entry.state, entry.task_id, entry.final) == (
        "created",
        "t1",
        False,
    )
    ledger.finished("k", None, "completed", ["http://x/0.png"], None)
    entry = ledger.get("k")
    assert entry is not None and entry.final
    assert (entry.state, entry.task_id, entry.outputs) == ("completed", "t1", ["http://x/0.png"])
    assert ledger.claim("k", "b") == entry


def test_only_the_owner_releases_a_claim_and_only_before_a_task_exists(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.release("k", "b")
    assert ledger.get("k") is not None
    ledger.release("k", "a")
    assert ledger.get("k") is None
    ledger.claim("k", "a")
    ledger.created("k", "t1")
    ledger.release("k", "a")
    assert ledger.get("k") is not None


def test_an_unknown_outcome_is_kept_with_its_error(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.unknown("k", "no answer")
    entry = ledger.get("k")
    assert entry is not None and (entry.state, entry.error) == ("unknown", "no answer")


def test_the_input_is_the_picked_columns_and_the_default_key_ignores_column_order() -> None:
    row = {"id": 7, "text": "a fox", "ratio": "16:9", "seed": None}
    assert model_input(row, None, "id") == {"text": "a fox", "ratio": "16:9"}
    assert model_input(row, ("text",), None) == {"text": "a fox"}
    picked = model_input(row, (("text", "prompt"), ("ratio", "aspect_ratio")), None)
    assert picked == {"prompt": "a fox", "aspect_ratio": "16:9"}
    assert row_key(MODEL, {"a": 1, "b": 2}) == row_key(MODEL, {"b": 2, "a": 1})
    assert row_key(MODEL, {"a": 1}) != row_key("other/model", {"a": 1})


def worker(emu: Emulator, ledger: Path, **extra: Any) -> GenerateWorker:
    options = GenerateOptions(
        model=MODEL,
        concurrency=8,
        limits=FlowLimits().split(2),
        base_url=emu.base_url,
        ledger=str(ledger),
        poll=fast_poll(),
        retry=fast_retry(),
        **extra,
    )
    return GenerateWorker(options)


async def call(w: GenerateWorker, table: Any) -> list[dict[str, Any]]:
    out = [t async for t in w(table)]
    assert len(out) == 1
    rows: list[dict[str, Any]] = out[0].to_pylist()
    return rows


async def close(*workers: GenerateWorker) -> None:
    for w in workers:
        if w._client is not None:
            await w._client.aclose()
        if w._ledger is not None:
            w._ledger.close()


@pytest.mark.anyio
async def test_two_workers_on_the_same_rows_at_once_submit_each_row_once(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    table = pa.table({"prompt": [f"race {i}" for i in range(30)]})
    a, b = worker(emulator, tmp_path), worker(emulator, tmp_path)
    results: dict[str, list[dict[str, Any]]] = {}

    async def run(name: str, w: GenerateWorker) -> None:
        results[name] = await call(w, table)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", a)
            tg.start_soon(run, "b", b)
    finally:
        await close(a, b)
    stats = emulator.stats()
    assert stats.tasks_created == 30 and stats.duplicate_prompts == []
    assert [r["task_id"] for r in results["a"]] == [r["task_id"] for r in results["b"]]
    assert all(r["status"] == "completed" for r in results["a"] + results["b"])


@pytest.mark.anyio
async def test_a_row_claimed_by_a_dead_worker_is_reported_unknown_not_resent(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    prompt = {"prompt": "claimed, then the worker died mid-submit"}
    book = SqliteLedger.open(tmp_path)
    book.claim(row_key(MODEL, prompt), "dead-worker")
    book.close()
    w = worker(emulator, tmp_path, claim_timeout_s=0.2)
    try:
        rows = await call(w, pa.table({"prompt": [prompt["prompt"], "a fresh row"]}))
    finally:
        await close(w)
    assert rows[0]["status"] == "unknown" and rows[0]["task_id"] is None
    assert "not re-sent" in rows[0]["error"]
    assert rows[1]["status"] == "completed"
    assert emulator.stats().tasks_created == 1


@pytest.mark.anyio
async def test_a_refused_row_releases_its_claim_so_a_later_run_may_send_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, tmp_path)
    try:
        (row,) = await call(w, pa.table({"prompt": ["too many"], "num_images": [9]}))
    finally:
        await close(w)
    assert row["status"] == "refused" and row["task_id"] is None and "num_images" in row["error"]
    book = SqliteLedger.open(tmp_path)
    try:
        assert book.get(row_key(MODEL, {"prompt": "too many", "num_images": 9})) is None
    finally:
        book.close()
    assert emulator.stats().tasks_created == 0


def test_generate_rejects_bad_options_before_anything_runs() -> None:
    from wavespeed_async.ray import generate

    with pytest.raises(ValidationError, match="actors"):
        generate(None, model=MODEL, actors=0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="concurrency"):
        generate(None, model=MODEL, concurrency=-1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="model"):
        generate(None, model="flux")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="key"):
        generate(None, model=MODEL, key="prompt", columns=["prompt"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="share: allowed: a redis:// URL"):
        generate(None, model=MODEL, share=object())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_row_with_a_null_key_is_refused_and_the_others_run(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, tmp_path, key="id", columns=("prompt",))
    table = pa.table({"id": ["a", None, "b", "a"], "prompt": ["one", "two", "three", "one"]})
    try:
        rows = await call(w, table)
    finally:
        await close(w)
    assert [r["status"] for r in rows] == ["completed", "refused", "completed", "completed"]
    assert "'id' column is null" in rows[1]["error"] and rows[1]["task_id"] is None
    assert rows[0]["task_id"] == rows[3]["task_id"]  # one key, one task
    assert [r["prompt"] for r in rows] == ["one", "two", "three", "one"]
    assert emulator.stats().tasks_created == 2


@pytest.mark.anyio
async def test_batches_that_arrive_at_once_share_the_worker_s_one_client(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wavespeed_async._generate as generate_module

    opened: list[object] = []

    class CountedClient(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

        async def __aenter__(self) -> Client:
            await anyio.sleep(0.01)  # opening waits, as it does when it connects to a share
            return await super().__aenter__()

    monkeypatch.setattr(generate_module, "Client", CountedClient)
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, tmp_path)
    outs: list[list[dict[str, Any]]] = []

    async def run(n: int) -> None:
        outs.append(await call(w, pa.table({"prompt": [f"batch {n} row {i}" for i in range(5)]})))

    try:
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(run, n)
    finally:
        await close(w)
    assert len(opened) == 1
    assert sum(r["status"] == "completed" for out in outs for r in out) == 15


def test_the_core_never_imports_ray_or_pyarrow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wavespeed_async, wavespeed_async.cli, wavespeed_async._ledger;"
        "print(sorted(m for m in ('ray', 'pyarrow', 'redis') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
