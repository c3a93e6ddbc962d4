"""The ledger under faults and misuse, without Ray.

Rows killed while they wait out a 429, keys reused by another job or account, entries of an
earlier version, damage, a locked file, and URLs with passwords.
"""

from __future__ import annotations

import json
import sqlite3
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY
from tests.ray.test_ledger import MODEL, call, close, worker
from tests.ray.waiting import NAMESPACE, kill_while
from tests.services import RedisServer
from wavespeed_async import Client, LedgerError, ValidationError
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.jobs.entry import Entry, account_namespace
from wavespeed_async.jobs.ledger import DEFAULT_NAMESPACE, Ledger, SqliteLedger, open_ledger
from wavespeed_async.jobs.lifecycle import JobState
from wavespeed_async.ray._generate import GenerateOptions, row_key
from wavespeed_async.redis.ledger import RedisLedger

pytestmark = pytest.mark.e2e

pa = pytest.importorskip("pyarrow", reason="the ray extra is not installed")
OTHER_KEY = "wsk-another-account-0123456789"


def http_stats(emu: Emulator) -> dict[str, Any]:
    """The emulator's counters over HTTP (safe from any thread)."""
    with urllib.request.urlopen(emu.base_url + "/_emulator/stats", timeout=10) as r:  # noqa: S310
        data: dict[str, Any] = json.loads(r.read())
    return data


@pytest.mark.anyio
@pytest.mark.parametrize("store", ["folder", "redis"])
async def test_rows_a_killed_worker_left_waiting_out_a_429_are_taken_over_and_sent_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    location = request.getfixturevalue("redis").url if store == "redis" else str(tmp_path)
    n = 6
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast(), retry_after_s=60)
    async with Emulator(config) as emu:
        # Every submit of the first worker is answered 429, Retry-After: 60 s.
        emu.force_fault("rate_limit", on="submit", times=n)

        def refused_and_waiting(entries: list[Entry | None]) -> bool:
            return bool(http_stats(emu)["faults"]) and all(
                e is not None and e.state == "claimed" for e in entries
            )

        prompts = await anyio.to_thread.run_sync(
            lambda: kill_while(MODEL, emu.base_url, location, n, rate=0, ready=refused_and_waiting)
        )
        assert emu.stats().tasks_created == 0
        emu._faults._forced["submit"].clear()  # the 429s the dead worker never met
        # The next attempt takes the dead worker's claims over at once and sends each row.
        w = worker(emu, location, ledger_namespace=NAMESPACE, claim_timeout_s=30.0)
        try:
            with anyio.fail_after(20):
                rows = await call(w, pa.table({"prompt": prompts}))
        finally:
            await close(w)
        stats = emu.stats()
    assert [r["status"] for r in rows] == ["completed"] * n, [r["error"] for r in rows]
    assert stats.tasks_created == n and stats.duplicate_prompts == []


@pytest.mark.anyio
async def test_a_key_reused_for_another_model_or_input_is_a_ledger_error_naming_the_row(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    first = worker(emulator, tmp_path, key="id", columns=("prompt",))
    try:
        (row,) = await call(first, pa.table({"id": ["row-7"], "prompt": ["a lighthouse"]}))
    finally:
        await close(first)
    assert row["status"] == "completed"
    for extra, prompt in (({}, "a different prompt"), ({"model": "other/model"}, "a lighthouse")):
        again = worker(emulator, tmp_path, key="id", columns=("prompt",), **extra)
        try:
            with pytest.raises(LedgerError, match="row 'row-7' holds the task of another job"):
                await call(again, pa.table({"id": ["row-7"], "prompt": [prompt]}))
        finally:
            await close(again)
    assert emulator.stats().tasks_created == 1


@pytest.mark.anyio
async def test_two_accounts_on_one_redis_ledger_never_take_each_other_s_results(
    emulator: Emulator, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pa.table({"prompt": ["the same row for both"]})
    results = {}
    for key in (CANARY_KEY, OTHER_KEY):
        monkeypatch.setenv("WAVESPEED_API_KEY", key)
        w = worker(emulator, redis.url)  # the default namespace: one per account
        try:
            (results[key],) = await call(w, table)
        finally:
            await close(w)
    assert results[CANARY_KEY]["task_id"] != results[OTHER_KEY]["task_id"]
    assert emulator.stats().tasks_created == 2
    # Both accounts in one namespace given on purpose: the second is refused, by name.
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    w = worker(emulator, redis.url, ledger_namespace="shared-by-mistake")
    try:
        await call(w, table)
    finally:
        await close(w)
    monkeypatch.setenv("WAVESPEED_API_KEY", OTHER_KEY)
    w = worker(emulator, redis.url, ledger_namespace="shared-by-mistake")
    try:
        with pytest.raises(LedgerError, match="recorded by another account"):
            await call(w, table)
    finally:
        await close(w)
    assert emulator.stats().tasks_created == 3


def v1_ledger(folder: Path, rows: list[tuple[str, str, str | None, str | None]]) -> None:
    """A ledger file as the first version wrote it: (key, state, task id, outputs)."""
    conn = sqlite3.connect(folder / "ledger.sqlite3")
    conn.executescript(
        "PRAGMA journal_mode = WAL;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE ledger (key TEXT PRIMARY KEY, state TEXT NOT NULL, task_id TEXT,"
        " outputs TEXT, error TEXT, owner TEXT, claimed_at REAL NOT NULL,"
        " updated_at REAL NOT NULL);"
    )
    conn.execute("INSERT INTO meta VALUES ('schema', '1')")
    for key, state, task_id, outputs in rows:
        conn.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, NULL, 'old', 5, 6)",
            (key, state, task_id, outputs),
        )
    conn.commit()
    conn.close()


@pytest.mark.anyio
async def test_entries_of_an_earlier_version_are_checked_with_the_api_never_taken_as_they_are(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    async with Client(CANARY_KEY, base_url=emulator.base_url) as client:
        real = await client.run(MODEL, {"prompt": "ours"})
    ours, foreign = {"prompt": "ours"}, {"prompt": "not ours"}
    v1_ledger(
        tmp_path,
        [
            (row_key(MODEL, ours), "completed", real.id, '["https://evil.example/x.png"]'),
            (row_key(MODEL, foreign), "completed", "tskofanotheraccount", '["https://e/y.png"]'),
        ],
    )
    w = worker(emulator, tmp_path)
    try:
        rows = await call(w, pa.table({"prompt": ["ours", "not ours"]}))
    finally:
        await close(w)
    # Ours: polled, its real outputs; the other: unknown to this account, not used or re-sent.
    assert rows[0]["status"] == "completed" and rows[0]["outputs"] == list(real.outputs)
    assert rows[1]["status"] == "unknown" and "does not know" in rows[1]["error"]
    assert emulator.stats().tasks_created == 1


@pytest.mark.anyio
async def test_the_per_account_redis_ledger_still_finds_the_shared_hash_s_entries(
    emulator: Emulator, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_py

    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    async with Client(CANARY_KEY, base_url=emulator.base_url) as client:
        real = await client.run(MODEL, {"prompt": "from before"})
        account = client.account_fingerprint
    old = Entry(state="completed", task_id=real.id, outputs=["https://evil.example/x.png"])
    with redis_py.Redis.from_url(redis.url) as conn:
        conn.hset(
            DEFAULT_NAMESPACE,
            row_key(MODEL, {"prompt": "from before"}),
            json.dumps({"state": old.state, "task_id": old.task_id, "outputs": old.outputs}),
        )
    w = worker(emulator, redis.url)
    try:
        (row,) = await call(w, pa.table({"prompt": ["from before"]}))
    finally:
        await close(w)
    assert row["task_id"] == real.id and row["outputs"] == list(real.outputs)
    assert emulator.stats().tasks_created == 1  # found, never sent again
    book = RedisLedger(redis.url, account_namespace(account))
    try:
        entry = book.get(row_key(MODEL, {"prompt": "from before"}))
    finally:
        book.close()
    assert entry is not None and entry.task_id == real.id and entry.state == "completed"


def test_every_ledger_refuses_a_step_and_names_a_damaged_row(
    tmp_path: Path, redis: RedisServer
) -> None:
    import redis as redis_py

    books: list[Ledger] = [SqliteLedger.open(tmp_path), RedisLedger(redis.url, "test-steps")]
    try:
        for book in books:
            book.claim("k", "a")
            with pytest.raises(LedgerError, match="row 'k': cannot go from claimed to created"):
                book.mark_created("k", "t1")
            assert book.mark_submitting("k", owner="a")
            book.mark_unknown("k", "lost")
            with pytest.raises(LedgerError, match="cannot go from unknown to completed"):
                book.mark_finished("k", JobState.COMPLETED, task_id="t1")
            assert book.state_of("k") is JobState.UNKNOWN
        with redis_py.Redis.from_url(redis.url) as conn:
            conn.hset("test-steps", "junk", b"[" * 100_000)
            conn.hset("test-steps", "odd", b'{"state": "exploded"}')
        for key in ("junk", "odd"):
            with pytest.raises(LedgerError, match=f"row '{key}'") as info:
                books[1].get(key)
            assert info.value.location == books[1].location
    finally:
        for book in books:
            book.close()


@pytest.mark.anyio
async def test_a_locked_sqlite_ledger_never_stops_the_worker_s_event_loop(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    SqliteLedger.open(tmp_path).close()
    other = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the file
    w = worker(emulator, tmp_path)
    ticks = 0
    done: list[list[dict[str, Any]]] = []

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def run() -> None:
        done.append(await call(w, pa.table({"prompt": ["waits for the lock"]})))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            tg.start_soon(run)
            await anyio.sleep(0.5)
            seen = ticks
            assert not done  # the worker waits for the ledger...
            other.execute("ROLLBACK")  # ...and the loop went on meanwhile
            with anyio.fail_after(20):
                while not done:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    finally:
        other.close()
        await close(w)
    assert seen >= 10
    assert done[0][0]["status"] == "completed"


def secret_url() -> str:
    """A URL with a password (made by a call, so that no local of a test holds it)."""
    return "redis://user:s3cret-pw@127.0.0.1:6379/0"


def test_generate_never_shows_a_url_s_password_in_its_options_or_a_traceback() -> None:
    from wavespeed_async.ray import generate

    seen: dict[str, Any] = {}

    class Recorder:
        def schema(self, fetch_if_missing: bool = False) -> None:
            return None

        def map_batches(self, fn: object, **kwargs: Any) -> Recorder:
            seen.update(kwargs)
            return self

    generate(Recorder(), model=MODEL, share=secret_url(), ledger=secret_url())  # type: ignore[arg-type]
    options: GenerateOptions = seen["fn_constructor_kwargs"]["options"]
    assert options.share == secret_url() and options.ledger == secret_url()  # for the actors
    assert "s3cret" not in repr(options) and "***@127.0.0.1" in repr(options)
    with pytest.raises(ValidationError) as info:
        generate(None, model="no-slash", share=secret_url(), ledger=secret_url())  # type: ignore[arg-type]
    shown = "".join(
        traceback.TracebackException.from_exception(info.value, capture_locals=True).format()
    )
    assert "s3cret" not in shown and "share = 'redis://***@127.0.0.1" in shown


def test_a_redis_ledger_open_names_no_password_in_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as info:
        ledger = open_ledger(secret_url().replace(":6379", ":1"), "x")
        ledger.get("k")
    shown = "".join(
        traceback.TracebackException.from_exception(info.value, capture_locals=True).format()
    )
    assert "s3cret" not in shown and "***@127.0.0.1" in shown


@pytest.mark.anyio
async def test_a_final_entry_rewritten_by_a_writer_to_the_ledger_is_checked_with_the_api(
    emulator: Emulator, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis as redis_py

    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)
    table = pa.table({"prompt": ["rewritten later"]})
    w = worker(emulator, redis.url)
    try:
        (first,) = await call(w, table)
        hash_name = account_namespace(w._account)
    finally:
        await close(w)
    key = row_key(MODEL, {"prompt": "rewritten later"})
    with redis_py.Redis.from_url(redis.url) as conn:
        entry = json.loads(conn.hget(hash_name, key))
        # The stamp can be copied (it holds no secret); the outputs are the writer's.
        entry["outputs"] = ["https://evil.example/x.png"]
        conn.hset(hash_name, key, json.dumps(entry))
    polls = emulator.stats().polls_total
    w = worker(emulator, redis.url)
    try:
        (again,) = await call(w, table)
    finally:
        await close(w)
    assert again["outputs"] == first["outputs"] and again["task_id"] == first["task_id"]
    assert emulator.stats().polls_total > polls  # asked of the API, not taken as it was
    assert emulator.stats().tasks_created == 1
    book = RedisLedger(redis.url, hash_name)
    try:
        fixed = book.get(key)
    finally:
        book.close()
    assert fixed is not None and fixed.outputs == first["outputs"]
