"""The ledger's claims, and the worker's handling of them, without Ray (fast)."""

from __future__ import annotations

import collections
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.ray.waiting import NAMESPACE, kill_while_rows_wait
from tests.services import RedisServer
from wavespeed_async import Client, FlowLimits, LedgerError, ValidationError
from wavespeed_async.emulator import Emulator
from wavespeed_async.jobs.ledger import (
    Ledger,
    SqliteLedger,
    new_owner,
    owner_gone,
)
from wavespeed_async.jobs.lifecycle import JobState
from wavespeed_async.ray._generate import GenerateOptions, GenerateWorker, model_input, row_key
from wavespeed_async.redis.ledger import RedisLedger

pytestmark = pytest.mark.e2e

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
    assert other is not None and other.state == "claimed" and other.owner == "worker-a"
    assert other.task_id is None and abs(other.claimed_at - time.time()) < 60


def test_only_the_owner_of_a_claim_moves_it_to_submitting_and_only_once(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    assert ledger.mark_submitting("k", owner="b") is False
    assert ledger.mark_submitting("nobody-claimed-this", owner="a") is False
    assert ledger.mark_submitting("k", owner="a") is True
    assert (
        ledger.mark_submitting("k", owner="a") is False
    )  # already submitting: never a second send
    entry = ledger.get("k")
    assert entry is not None and (entry.state, entry.owner) == ("submitting", "a")


def test_a_claim_taken_over_can_no_longer_be_sent_by_its_old_owner(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    seen = ledger.get("k")
    assert seen is not None
    assert ledger.take_over("k", "b", seen) is True
    assert (
        ledger.mark_submitting("k", owner="a") is False
    )  # a's turn came too late: it sends nothing
    # The same snapshot cannot be taken over twice: c lost the race to b.
    assert ledger.take_over("k", "c", seen) is False
    now = ledger.get("k")
    assert now is not None and (now.state, now.owner) == ("claimed", "b")
    assert now.claimed_at >= seen.claimed_at
    assert ledger.mark_submitting("k", owner="b") is True


def test_a_row_being_submitted_or_with_a_task_is_never_taken_over(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    seen = ledger.get("k")
    assert seen is not None
    ledger.mark_submitting("k", owner="a")
    assert ledger.take_over("k", "b", seen) is False
    sending = ledger.get("k")
    assert sending is not None and ledger.take_over("k", "b", sending) is False
    ledger.mark_created("k", "t1")
    created = ledger.get("k")
    assert created is not None and ledger.take_over("k", "b", created) is False
    assert ledger.get("k") == created
    assert created.owner == "a" and created.task_id == "t1"


def test_a_key_moves_to_created_then_finished_keeping_its_task(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.mark_submitting("k", owner="a")
    ledger.mark_created("k", "t1")
    entry = ledger.get("k")
    assert entry is not None and (entry.state, entry.task_id, entry.final) == (
        "created",
        "t1",
        False,
    )
    ledger.mark_finished("k", JobState.COMPLETED, outputs=["http://x/0.png"])
    entry = ledger.get("k")
    assert entry is not None and entry.final
    assert (entry.state, entry.task_id, entry.outputs) == ("completed", "t1", ["http://x/0.png"])
    assert ledger.claim("k", "b") == entry


def test_only_the_owner_releases_a_claim_and_only_before_a_task_exists(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.release("k", "b")
    assert ledger.get("k") is not None
    ledger.release("k", "a")  # claimed, never sent
    assert ledger.get("k") is None
    ledger.claim("k", "a")
    ledger.mark_submitting("k", owner="a")
    ledger.release("k", "a")  # sent and refused
    assert ledger.get("k") is None
    ledger.claim("k", "a")
    ledger.mark_submitting("k", owner="a")
    ledger.mark_created("k", "t1")
    ledger.release("k", "a")
    assert ledger.get("k") is not None


def test_an_unknown_outcome_is_kept_with_its_error(ledger: Ledger) -> None:
    ledger.claim("k", "a")
    ledger.mark_submitting("k", owner="a")
    ledger.mark_unknown("k", "no answer")
    entry = ledger.get("k")
    assert entry is not None and (entry.state, entry.error) == ("unknown", "no answer")


def test_an_owner_is_known_gone_only_when_its_process_on_this_host_has_ended() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # ended and collected: its pid names no process (barring reuse, rare)
    mine = new_owner()
    host, pid, _ = mine.split("/")
    assert int(pid) == os.getpid() and not owner_gone(mine)
    assert owner_gone(f"{host}/{proc.pid}/x")
    assert not owner_gone(f"another-host.example/{proc.pid}/x")
    assert not owner_gone(f"{host.split('#')[0]}#1/{proc.pid}/x")  # another pid namespace
    assert not owner_gone("an-id-of-another-form")
    assert not owner_gone(None)


def test_a_ledger_written_by_the_first_version_opens_and_its_rows_keep_their_meaning(
    tmp_path: Path,
) -> None:
    # The first version's file: its schema, and rows in its states (no "claimed").
    conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
    conn.executescript(
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE ledger (key TEXT PRIMARY KEY, state TEXT NOT NULL, task_id TEXT,"
        " outputs TEXT, error TEXT, owner TEXT, claimed_at REAL NOT NULL,"
        " updated_at REAL NOT NULL);"
        "INSERT INTO ledger VALUES ('sent', 'submitting', NULL, NULL, NULL, 'old', 5, 5);"
        "INSERT INTO ledger VALUES ('done', 'completed', 't1', '[\"u\"]', NULL, 'old', 5, 6);"
    )
    conn.execute("INSERT INTO meta VALUES ('schema', '1')")
    conn.commit()
    conn.close()
    book = SqliteLedger.open(tmp_path)
    try:
        sent = book.get("sent")
        assert sent is not None and (sent.state, sent.since) == ("submitting", 5)
        assert book.take_over("sent", "new", sent) is False  # may have been sent: kept
        done = book.get("done")
        assert done is not None and (done.state, done.outputs) == ("completed", ["u"])
        assert book.claim("fresh", "new") is None and book.mark_submitting("fresh", owner="new")
    finally:
        book.close()


def test_a_redis_entry_written_by_the_first_version_keeps_its_meaning(
    redis: RedisServer,
) -> None:
    import redis as redis_py

    old = b'{"state":"submitting","task_id":null,"outputs":[],"error":null,"owner":"old",'
    with redis_py.Redis.from_url(redis.url) as conn:
        conn.hset("test-ledger", "sent", old + b'"claimed_at":5.0}')
    book = RedisLedger(redis.url, "test-ledger")
    try:
        sent = book.get("sent")
        assert sent is not None and (sent.state, sent.since) == ("submitting", 5.0)
        assert book.take_over("sent", "new", sent) is False  # may have been sent: kept
        assert book.mark_submitting("sent", owner="old") is False
        assert book.get("sent") == sent
    finally:
        book.close()


def test_a_ledger_folder_that_cannot_be_opened_is_a_ledger_error_naming_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "ledger.sqlite3").mkdir()  # the file's place is taken by a folder
    with pytest.raises(LedgerError, match="cannot open it") as info:
        SqliteLedger.open(tmp_path)
    assert info.value.location == str(tmp_path) and str(tmp_path) in str(info.value)


def test_a_redis_ledger_whose_server_went_away_raises_a_ledger_error_without_the_password(
    redis: RedisServer,
) -> None:
    url = redis.url.replace("redis://", "redis://user:s3cret-pass@")
    book = RedisLedger(redis.url, "test-ledger")
    masked = RedisLedger(url, "test-ledger")
    try:
        assert book.claim("k", "a") is None
        redis.stop()
        for call in (
            lambda: book.get("k"),
            lambda: book.claim("j", "a"),
            lambda: book.mark_submitting("k", owner="a"),
            lambda: masked.get("k"),
        ):
            with pytest.raises(LedgerError) as info:
                call()
            assert "s3cret" not in str(info.value) + repr(info.value)
            assert info.value.location in str(info.value)
        with pytest.raises(LedgerError) as info:
            book.mark_created("k", "t1")
        assert info.value.task_id == "t1" and "t1" in str(info.value)  # never lost
        assert masked.location.startswith("redis://***@127.0.0.1:")
        assert "s3cret" not in repr(masked)
    finally:
        book.close()
        masked.close()


def test_the_input_is_the_picked_columns_and_the_default_key_ignores_column_order() -> None:
    row = {"id": 7, "text": "a fox", "ratio": "16:9", "seed": None}
    assert model_input(row, None, "id") == {"text": "a fox", "ratio": "16:9"}
    assert model_input(row, ("text",), None) == {"text": "a fox"}
    picked = model_input(row, (("text", "prompt"), ("ratio", "aspect_ratio")), None)
    assert picked == {"prompt": "a fox", "aspect_ratio": "16:9"}
    assert row_key(MODEL, {"a": 1, "b": 2}) == row_key(MODEL, {"b": 2, "a": 1})
    assert row_key(MODEL, {"a": 1}) != row_key("other/model", {"a": 1})


def worker(emu: Emulator, ledger: Path | str, **extra: Any) -> GenerateWorker:
    options = GenerateOptions(
        **{
            "model": MODEL,
            "concurrency": 8,
            "limits": FlowLimits().split(2),
            "base_url": emu.base_url,
            "ledger": str(ledger),
            "poll": fast_poll(),
            "retry": fast_retry(),
            **extra,
        }
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
    # Each row's cost column is its task's billing: the same task, the same one charge.
    prices = {t.id: t.price for t in stats.tasks.values()}
    assert all(r["cost_usd"] == prices[r["task_id"]] for r in results["a"] + results["b"])


@pytest.mark.anyio
async def test_a_row_a_dead_worker_was_sending_is_reported_unknown_not_resent(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    prompt = {"prompt": "claimed, then the worker died mid-submit"}
    book = SqliteLedger.open(tmp_path)
    book.claim(row_key(MODEL, prompt), "dead-worker")
    assert book.mark_submitting(row_key(MODEL, prompt), owner="dead-worker")
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
async def test_a_row_claimed_and_never_sent_is_taken_over_after_the_claim_timeout(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    prompt = {"prompt": "claimed by a worker of another machine, never sent"}
    book = SqliteLedger.open(tmp_path)
    book.claim(row_key(MODEL, prompt), "elsewhere/1/x")  # its liveness cannot be told
    book.close()
    w = worker(emulator, tmp_path, claim_timeout_s=0.2)
    try:
        rows = await call(w, pa.table({"prompt": [prompt["prompt"]]}))
    finally:
        await close(w)
    assert rows[0]["status"] == "completed" and rows[0]["task_id"]
    stats = emulator.stats()
    assert stats.tasks_created == 1 and stats.duplicate_prompts == []


@pytest.mark.anyio
@pytest.mark.parametrize("store", ["folder", "redis"])
async def test_rows_a_killed_worker_left_waiting_for_their_start_are_sent_once_by_the_next(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    location = request.getfixturevalue("redis").url if store == "redis" else str(tmp_path)
    prompts = await anyio.to_thread.run_sync(
        kill_while_rows_wait, MODEL, emulator.base_url, location, 8
    )
    assert emulator.stats().tasks_created == 2
    # The next attempt (a retried block): the claims of the dead process are taken over at
    # once, so nothing waits for the claim timeout, and nothing is "unknown".
    w = worker(emulator, location, ledger_namespace=NAMESPACE, claim_timeout_s=10.0)
    try:
        with anyio.fail_after(30):
            rows = await call(w, pa.table({"prompt": prompts}))
    finally:
        await close(w)
    assert [r["status"] for r in rows] == ["completed"] * 8, [r["error"] for r in rows]
    stats = emulator.stats()
    assert stats.tasks_created == 8 and stats.duplicate_prompts == []
    assert len({r["task_id"] for r in rows}) == 8


@pytest.mark.anyio
async def test_a_worker_whose_ledger_could_not_be_opened_never_runs_a_batch_without_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    (tmp_path / "ledger.sqlite3").mkdir()
    w = worker(emulator, tmp_path)
    table = pa.table({"prompt": ["recorded or not sent"]})
    try:
        with pytest.raises(LedgerError, match="cannot open it"):
            await call(w, table)
        assert emulator.stats().tasks_created == 0
        (tmp_path / "ledger.sqlite3").rmdir()  # the store is back: the next batch uses it
        (row,) = await call(w, table)
    finally:
        await close(w)
    book = SqliteLedger.open(tmp_path)
    try:
        entry = book.get(row_key(MODEL, {"prompt": "recorded or not sent"}))
    finally:
        book.close()
    assert row["status"] == "completed"
    assert entry is not None and entry.task_id == row["task_id"]


@pytest.mark.anyio
@pytest.mark.parametrize("when", ["before", "during"])
async def test_a_worker_whose_redis_ledger_went_away_fails_the_block_with_a_ledger_error(
    emulator: Emulator,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, redis.url, ledger_namespace="test-ledger")
    table = pa.table({"prompt": [f"no ledger {i} [latency:300]" for i in range(4)]})
    try:
        if when == "before":
            redis.stop()
            with pytest.raises(LedgerError, match=r"ledger redis://127\.0\.0\.1:\d+"):
                await call(w, table)
        else:
            async with anyio.create_task_group() as tg:

                async def stop_once_sent() -> None:
                    while emulator.stats().tasks_created < 4:
                        await anyio.sleep(0.01)
                    redis.stop()

                tg.start_soon(stop_once_sent)
                with pytest.raises(LedgerError) as info:
                    await call(w, table)
            # The task whose end could not be recorded is named by the error.
            assert info.value.task_id in emulator.stats().tasks
    finally:
        await close(w)


@pytest.mark.anyio
async def test_a_task_the_ledger_could_not_record_ends_the_block_at_once_naming_it(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    record = SqliteLedger.mark_created
    failed: list[str] = []

    def created(self: SqliteLedger, key: str, task_id: str) -> None:
        if not failed:  # the first write fails, as on a full disk
            failed.append(task_id)
            raise LedgerError("ledger: cannot record a task", task_id=task_id)
        record(self, key, task_id)

    monkeypatch.setattr(SqliteLedger, "mark_created", created)
    w = worker(emulator, tmp_path)
    # Tasks of 60 s: the block must end on the failed write, not when they end.
    table = pa.table({"prompt": [f"unrecorded {i} [latency:60000]" for i in range(3)]})
    try:
        with anyio.fail_after(30), pytest.raises(LedgerError) as info:
            await call(w, table)
    finally:
        await close(w)
    assert info.value.task_id == failed[0]
    # Every task that exists is in the ledger or named by the error: none is lost.
    book = SqliteLedger.open(tmp_path)
    try:
        keys = [row_key(MODEL, {"prompt": p}) for p in table.column("prompt").to_pylist()]
        entries = [e for k in keys if (e := book.get(k)) is not None]
    finally:
        book.close()
    recorded = {e.task_id for e in entries if e.task_id}
    assert set(emulator.stats().tasks) == recorded | {info.value.task_id}
    assert info.value.task_id not in recorded
    # The row whose task went unrecorded stays `submitting`: never sent again. A row the
    # block ended before it was sent has no entry (its claim was released).
    assert len(entries) == len(emulator.stats().tasks)
    assert [e.state for e in entries if e.task_id is None] == ["submitting"]


async def wait_for_states(book: Ledger, keys: list[str], want: list[str]) -> None:
    """Wait until the keys' states are ``want`` (in any order)."""
    with anyio.fail_after(20):
        while sorted(e.state if (e := book.get(k)) else "-" for k in keys) != sorted(want):
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_worker_whose_claim_was_taken_over_while_it_waited_sends_nothing_and_follows(
    emulator: Emulator, redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    prompts = [f"taken over {i} [latency:300]" for i in range(4)]
    keys = [row_key(MODEL, {"prompt": p}) for p in prompts]
    table = pa.table({"prompt": prompts})
    # a: one task in flight at a time (an account-wide cap, through Redis): its first row is
    # sent, the 3 others wait, claimed. b: takes over claims held for 50 ms.
    a = worker(emulator, tmp_path, share=redis.url, limits=FlowLimits(max_in_flight=1))
    b = worker(emulator, tmp_path, claim_timeout_s=0.05)
    book = SqliteLedger.open(tmp_path)
    results: dict[str, list[dict[str, Any]]] = {}

    async def run(name: str, w: GenerateWorker) -> None:
        results[name] = await call(w, table)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", a)
            await wait_for_states(book, keys, ["created"] + ["claimed"] * 3)
            tg.start_soon(run, "b", b)
    finally:
        book.close()
        await close(a, b)
    stats = emulator.stats()
    assert stats.tasks_created == 4 and stats.duplicate_prompts == []
    assert all(r["status"] == "completed" for r in results["a"] + results["b"])
    # a sent its first row; b the 3 it took over; a followed them to b's tasks.
    assert [r["task_id"] for r in results["a"]] == [r["task_id"] for r in results["b"]]


@pytest.mark.anyio
async def test_a_block_cancelled_while_rows_wait_releases_their_claims(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    prompts = [f"cancelled {i}" for i in range(5)]
    keys = [row_key(MODEL, {"prompt": p}) for p in prompts]
    w = worker(emulator, tmp_path, limits=FlowLimits(max_tasks_per_minute=2))
    book = SqliteLedger.open(tmp_path)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, w, pa.table({"prompt": prompts}))
            await wait_for_states(book, keys, ["completed"] * 2 + ["claimed"] * 3)
            tg.cancel_scope.cancel()
        entries = [book.get(k) for k in keys]
    finally:
        book.close()
        await close(w)
    # Which two rows are sent first depends on the order their submits start.
    states = [e.state if e else None for e in entries]
    assert collections.Counter(states) == {"completed": 2, None: 3}
    assert emulator.stats().tasks_created == 2


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
    assert row["cost_usd"] == 0  # nothing was created, nothing charged
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
    import wavespeed_async.ray._generate as generate_module

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
        "import sys, wavespeed_async, wavespeed_async.cli, wavespeed_async.jobs.ledger;"
        "print(sorted(m for m in ('ray', 'pyarrow', 'redis') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
