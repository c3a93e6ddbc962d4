"""generate() on a real local Ray instance, against the emulator in its own process."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import CANARY_KEY
from tests.ray.conftest import MODEL, LocalRay, RayEmulator, fast_poll, fast_retry
from tests.redis._helpers import peak_in_flight
from tests.services import RedisServer
from wavespeed_async import Client, FlowLimits, ValidationError
from wavespeed_async.emulator import EmulatorStats
from wavespeed_async.jobs.ledger import SqliteLedger
from wavespeed_async.ray import generate
from wavespeed_async.ray._generate import row_key

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.e2e,
    # Ray's own deprecation notices (of its settings, not of anything used here).
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\."),
    # Ray Data's per-dataset log files, which it may leave to the garbage collector when
    # two datasets run at once.
    pytest.mark.filterwarnings(r"ignore:unclosed file .*/logs/ray-data/:ResourceWarning"),
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <_io\.FileIO name='.*/logs/ray-data/"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def pipeline(emu: RayEmulator, rows: list[dict[str, Any]], **options: Any) -> Any:
    ds = ray.data.from_items(rows, override_num_blocks=options.pop("blocks", 4))
    options.setdefault("actors", 2)
    options.setdefault("concurrency", 16)
    return generate(
        ds, model=MODEL, base_url=emu.base_url, poll=fast_poll(), retry=fast_retry(), **options
    )


def prompts(tag: str, n: int, *, fail_every: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        text = f"{tag} {i}"
        if fail_every and i % fail_every == 0:
            text += " [fail:1200]"
        rows.append({"id": f"row-{i:04d}", "text": text})
    return rows


def test_200_rows_on_two_actors_become_200_tasks_and_failures_come_back_as_rows(
    ray_emulator: RayEmulator, tmp_path: Path
) -> None:
    rows = prompts("two hundred", 200, fail_every=40)
    out = pipeline(
        ray_emulator,
        rows,
        columns={"text": "prompt"},
        key="id",
        ledger=tmp_path / "ledger",
        batch_size=25,
    ).take_all()
    stats = ray_emulator.stats()
    assert len(out) == 200
    assert sorted(r["id"] for r in out) == [r["id"] for r in rows]
    by_id = {r["id"]: r for r in out}
    for row in rows:  # the input columns come back unchanged
        assert by_id[row["id"]]["text"] == row["text"]
    failed = [r for r in out if r["status"] == "failed"]
    completed = [r for r in out if r["status"] == "completed"]
    assert len(failed) == 5 and len(completed) == 195
    assert all("[fail:1200]" in r["text"] and "1200" in r["error"] and r["task_id"] for r in failed)
    assert all(r["error"] == "" and len(r["outputs"]) == 1 for r in completed)
    # cost_usd: the billing's net per row, exact; a failed task was refunded.
    assert all(r["cost_usd"] == Decimal("0.04") for r in completed)
    assert all(r["cost_usd"] == 0 for r in failed)
    assert all(r["outputs"][0].startswith(ray_emulator.base_url) for r in completed)
    assert len({r["task_id"] for r in out}) == 200
    assert set(stats["tasks"]) == {r["task_id"] for r in out}
    assert stats["tasks_created"] == 200 and stats["submits_received"] == 200
    assert stats["duplicate_prompts"] == []


@pytest.mark.parametrize("store", ["folder", "redis"])
def test_the_same_pipeline_twice_with_one_ledger_creates_no_new_task(
    ray_emulator: RayEmulator, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        ledger: str | Path = server.url
    else:
        ledger = tmp_path / "ledger"
    # No key column and no column option: each row's input is its columns, keyed by a hash.
    rows = [{"prompt": f"rerun {store} {i}" + (" [fail]" if i == 3 else "")} for i in range(40)]
    first = pipeline(ray_emulator, rows, ledger=ledger).take_all()
    created_first = ray_emulator.stats()["tasks_created"]
    ray_emulator.reset()
    second = pipeline(ray_emulator, rows, ledger=ledger).take_all()
    stats = ray_emulator.stats()
    assert created_first == 40
    assert stats["tasks_created"] == 0 and stats["submits_received"] == 0
    assert stats["polls_total"] == 0  # finished rows are answered from the ledger

    def outcome(rs: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {
            r["prompt"]: (r["task_id"], r["status"], list(r["outputs"]), r["error"]) for r in rs
        }

    assert outcome(second) == outcome(first)
    assert collections.Counter(r["status"] for r in second) == {"completed": 39, "failed": 1}


def test_rows_of_a_rerun_whose_tasks_still_run_are_polled_not_resubmitted(
    ray_emulator: RayEmulator, tmp_path: Path
) -> None:
    rows = [{"prompt": f"slow {i} [latency:400]"} for i in range(6)]
    ledger = tmp_path / "ledger"

    async def submit_only() -> None:
        # An earlier run that died after creating the tasks: the ledger has their ids.
        from wavespeed_async.jobs.ledger import SqliteLedger
        from wavespeed_async.ray._generate import row_key

        book = SqliteLedger.open(ledger)
        try:
            async with Client(CANARY_KEY, base_url=ray_emulator.base_url) as client:
                for row in rows:
                    pred = await client.submit(MODEL, row)
                    key = row_key(MODEL, row)
                    assert book.claim(key, "dead-worker") is None
                    assert book.mark_submitting(key, owner="dead-worker")
                    book.mark_created(key, pred.id)
        finally:
            book.close()

    import anyio

    anyio.run(submit_only)
    out = pipeline(ray_emulator, rows, ledger=ledger).take_all()
    stats = ray_emulator.stats()
    assert stats["tasks_created"] == 6 and stats["submits_received"] == 6
    assert all(r["status"] == "completed" for r in out)
    assert {r["task_id"] for r in out} == set(stats["tasks"])
    assert stats["polls_total"] >= 6


def test_files_and_bytes_flow_to_the_next_stage(ray_emulator: RayEmulator, tmp_path: Path) -> None:
    rows = [{"prompt": f"download {i}", "aspect_ratio": "16:9"} for i in range(4)]
    out = pipeline(ray_emulator, rows, download=tmp_path / "imgs", download_bytes=True).take_all()
    for r in out:
        assert r["status"] == "completed", r["error"]
        (path,) = r["files"]
        (image,) = r["images"]
        assert Path(path).parent == (tmp_path / "imgs").resolve()
        assert Path(path).read_bytes() == image and image[:8] == b"\x89PNG\r\n\x1a\n"
    assert ray_emulator.stats()["media_requests_with_auth"] == 0


def test_killing_an_actor_mid_run_ends_every_row_once_without_a_duplicate_task(
    ray_emulator: RayEmulator, local_ray: LocalRay, tmp_path: Path
) -> None:
    rows = [{"prompt": f"kill {i} [latency:150]"} for i in range(200)]
    killed: list[tuple[int, int]] = []  # (pid, tasks created when it was killed)
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            created = ray_emulator.stats()["tasks_created"]
            workers = local_ray.map_workers()
            if created >= 50 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append((workers[0], created))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out = pipeline(
            ray_emulator,
            rows,
            ledger=tmp_path / "ledger",
            concurrency=8,
            batch_size=20,
            blocks=10,
            claim_timeout_s=3.0,
        ).take_all()
    finally:
        stop.set()
        thread.join()
    stats = ray_emulator.stats()
    assert killed and killed[0][1] < 200  # the actor died while rows were still to go
    assert sorted(r["prompt"] for r in out) == sorted(r["prompt"] for r in rows)
    assert stats["duplicate_prompts"] == []
    assert stats["tasks_created"] <= 200
    statuses = collections.Counter(r["status"] for r in out)
    # A row whose submit was in the air when its actor died has an unknown outcome: it is
    # reported, never sent again; every other row completed, each with its own task.
    assert set(statuses) <= {"completed", "unknown"}, statuses
    completed = [r for r in out if r["status"] == "completed"]
    assert len({r["task_id"] for r in completed}) == len(completed)
    assert {r["task_id"] for r in completed} <= set(stats["tasks"])
    assert statuses["unknown"] <= 8


def test_rows_an_actor_left_waiting_for_their_start_are_sent_once_when_the_block_runs_again(
    ray_emulator: RayEmulator, local_ray: LocalRay, tmp_path: Path
) -> None:
    # One actor, 6 starts a minute, 8 rows: it sends 6, and 2 wait (claimed) for a start a
    # minute away. It is killed then; Ray restarts it and runs the block again, in a new
    # process with a fresh start window: the 6 are polled, the 2 taken over and sent.
    rows = [{"prompt": f"killed while waiting {i}"} for i in range(8)]
    keys = [row_key(MODEL, r) for r in rows]
    ledger = tmp_path / "ledger"
    killed: list[list[str | None]] = []  # the rows' states when the actor was killed
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            if (ledger / "ledger.sqlite3").exists():
                book = SqliteLedger.open(ledger)
                try:
                    entries = [book.get(k) for k in keys]
                finally:
                    book.close()
                states = [e.state if e else None for e in entries]
                sent = sum(e is not None and e.task_id is not None for e in entries)
                workers = local_ray.map_workers()
                if sent == 6 and None not in states and workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(states)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out = pipeline(
            ray_emulator,
            rows,
            ledger=ledger,
            actors=1,
            blocks=1,
            limits=FlowLimits(max_tasks_per_minute=6),
            claim_timeout_s=20.0,
        ).take_all()
    finally:
        stop.set()
        thread.join()
    stats = ray_emulator.stats()
    assert killed, "the actor was never killed while rows waited"
    assert collections.Counter(r["status"] for r in out) == {"completed": 8}, out
    assert killed[0].count("claimed") == 2  # never sent, so sent by the block's next run
    assert stats["tasks_created"] == 8 and stats["duplicate_prompts"] == []
    assert {r["task_id"] for r in out} == set(stats["tasks"])


def test_a_ledger_that_cannot_be_reached_fails_the_pipeline_with_a_ledger_error(
    ray_emulator: RayEmulator, redis: RedisServer
) -> None:
    redis.stop()
    rows = [{"prompt": f"unrecorded {i}"} for i in range(4)]
    with pytest.raises(ray.exceptions.RayError) as info:
        pipeline(ray_emulator, rows, ledger=redis.url, actors=1, blocks=1).take_all()
    # Ray Data reports a failed block as its own error, carrying the worker's traceback.
    assert f"LedgerError: ledger {redis.url}: cannot read a row" in str(info.value)
    assert ray_emulator.stats()["submits_received"] == 0  # nothing sent unrecorded


def test_a_block_that_failed_on_its_ledger_is_retried_by_ray_without_billing_a_row_twice(
    ray_emulator: RayEmulator, redis: RedisServer
) -> None:
    """A ledger that cannot be reached at first costs a Ray retry of the block, never a task.

    With Ray Data told to retry blocks that fail with a LedgerError, the retried block sends
    each row once.
    """
    ctx = ray.data.DataContext.get_current()
    if not hasattr(ctx, "retried_map_errors"):
        pytest.skip("this Ray Data has no DataContext.retried_map_errors")
    redis.stop()
    # Until the ledger has failed once, its port accepts and at once drops each connection.
    listener = socket.create_server(("127.0.0.1", redis.port))
    dropped = threading.Event()

    def drop_connections() -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                conn, _ = listener.accept()
                conn.close()
                dropped.set()

    rows = [{"prompt": f"retried {i}"} for i in range(12)]
    out: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ds = pipeline(ray_emulator, rows, ledger=redis.url, actors=1, blocks=2)
            out.extend(ds.take_all())
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    saved = ctx.retried_map_errors, ctx.max_map_retries
    ctx.retried_map_errors, ctx.max_map_retries = ["LedgerError"], 8
    dropper = threading.Thread(target=drop_connections, daemon=True)
    runner = threading.Thread(target=run, daemon=True)
    try:
        dropper.start()
        runner.start()
        assert dropped.wait(120), "the ledger was never tried"
        listener.close()
        dropper.join(10)
        redis.start()  # the same port: the block's next attempt reaches it
        runner.join(180)
        assert not runner.is_alive(), "the pipeline did not end"
    finally:
        ctx.retried_map_errors, ctx.max_map_retries = saved
        listener.close()
    assert not errors, errors
    stats = ray_emulator.stats()
    assert collections.Counter(r["status"] for r in out) == {"completed": len(rows)}, out
    assert stats["tasks_created"] == len(rows) and stats["duplicate_prompts"] == []
    assert {r["task_id"] for r in out} == set(stats["tasks"])


def test_two_pipelines_sharing_limits_never_exceed_the_account(
    ray_emulator: RayEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    import inspect

    if "share" not in inspect.signature(Client).parameters:
        pytest.skip("this Client has no share= parameter (shared limits are not built in)")
    limits = FlowLimits(max_in_flight=6, max_polls_per_s=None)
    slow = [f"[latency:100] share {n}" for n in range(60)]
    a = pipeline(
        ray_emulator,
        [{"prompt": p + " a"} for p in slow],
        share=redis.url,
        limits=limits,
        actors=1,
    )
    b = pipeline(
        ray_emulator,
        [{"prompt": p + " b"} for p in slow],
        share=redis.url,
        limits=limits,
        actors=1,
    )
    outs: dict[str, list[dict[str, Any]]] = {}
    threads = [
        threading.Thread(target=lambda n=n, ds=ds: outs.__setitem__(n, ds.take_all()))
        for n, ds in (("a", a), ("b", b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out_a, out_b = outs["a"], outs["b"]
    stats = ray_emulator.stats()
    assert len(out_a) == len(out_b) == 60
    assert all(r["status"] == "completed" for r in out_a + out_b)
    assert stats["tasks_created"] == 120
    assert stats["max_running"] <= 6


def test_without_a_share_each_actor_keeps_its_part_of_the_in_flight_cap(
    ray_emulator: RayEmulator,
) -> None:
    """Without ``share``, each of 2 actors gets ``limits.split(2)``.

    Together they keep the account's cap of 4 tasks in flight (with the whole limits each,
    they would reach 8).
    """
    limits = FlowLimits(max_in_flight=4, max_polls_per_s=None)
    rows = [{"prompt": f"[latency:250] split {n}"} for n in range(32)]
    out = pipeline(ray_emulator, rows, limits=limits, actors=2, batch_size=8).take_all()
    stats = msgspec.convert(ray_emulator.stats(), EmulatorStats)
    assert len(out) == 32 and all(r["status"] == "completed" for r in out)
    assert stats.tasks_created == 32
    peak = peak_in_flight(stats)
    print(f"peak in flight {peak} (cap 4)")
    assert peak <= 4


def test_a_dataset_that_already_has_an_output_column_or_lacks_the_key_is_refused_early(
    local_ray: LocalRay,
) -> None:
    ds = ray.data.from_items([{"prompt": "x", "status": "draft"}])
    with pytest.raises(ValidationError, match=r"ds: .*\['status'\]"):
        generate(ds, model=MODEL)
    with pytest.raises(ValidationError, match="key: the dataset has no column 'id'"):
        generate(ray.data.from_items([{"prompt": "x"}]), model=MODEL, key="id")


def test_without_a_key_the_driver_refuses_before_anything_runs(
    local_ray: LocalRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY")
    workers = set(local_ray.map_workers())
    ds = ray.data.from_items([{"prompt": "x"}])
    with pytest.raises(ValidationError, match=r"WAVESPEED_API_KEY is not set") as info:
        generate(ds, model=MODEL)
    assert info.value.field == "api_key" and "runtime_env" in str(info.value)
    assert set(local_ray.map_workers()) == workers  # no actor was started for it
