"""``wavespeed-async batch --share``: batches in several processes share one account's cap."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from tests.redis._helpers import peak_in_flight
from tests.services import RedisServer, free_port
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.emulator._config import LatencyDist

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 2
#: Tasks of about 0.5 s: each batch runs for seconds, so the two overlap.
SHORT = LatencyProfile(default=LatencyDist((5, 10, 20), (400, 500, 600)))


async def two_batches(tmp_path: Path, base_url: str, share: list[str]) -> None:
    env = {**os.environ, "WAVESPEED_API_KEY": "wsk-cli-share-test"}

    async def batch(name: str) -> None:
        jobs = tmp_path / f"{name}.jsonl"
        jobs.write_text("".join(json.dumps({"prompt": f"{name}-{i}"}) + "\n" for i in range(8)))
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs),
            "-o", str(tmp_path / name), "--model", "wavespeed-ai/flux-kontext-dev",
            "--base-url", base_url, "--concurrency", str(CONCURRENCY), "-q", *share,
        ]  # fmt: skip
        await anyio.run_process(cmd, cwd=ROOT, env=env, check=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(batch, "a")
        tg.start_soon(batch, "b")


async def test_two_batches_with_a_share_stay_under_one_concurrency(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with Emulator(EmulatorConfig(seed=8, latency=SHORT)) as emu:
        await two_batches(tmp_path, emu.base_url, ["--share", redis.url])
        stats = emu.stats()
    assert stats.tasks_completed == 16
    assert peak_in_flight(stats) <= CONCURRENCY


async def test_two_batches_without_a_share_exceed_it(tmp_path: Path) -> None:
    async with Emulator(EmulatorConfig(seed=8, latency=SHORT)) as emu:
        await two_batches(tmp_path, emu.base_url, [])
        stats = emu.stats()
    assert stats.tasks_completed == 16
    assert peak_in_flight(stats) > CONCURRENCY


async def test_a_batch_killed_while_its_job_waits_for_the_shared_window_leaves_it_pending(
    tmp_path: Path, redis: RedisServer
) -> None:
    import redis.asyncio as aioredis

    from wavespeed_async import Client, FlowLimits
    from wavespeed_async.jobs.journal import Journal

    key = "wsk-cli-share-test"
    model = "wavespeed-ai/flux-kontext-pro/text-to-image"
    env = {**os.environ, "WAVESPEED_API_KEY": key}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "waits"}) + "\n")
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs), "-o", str(out),
        "--model", model, "--concurrency", "1", "--rate", "1", "-q",
    ]  # fmt: skip
    async with Emulator(EmulatorConfig(seed=8, latency=LatencyProfile.fast())) as emu:
        # Another process of the account started a task this minute: at 1 per minute, the
        # batch's job passes its own pacing, takes its slot, and waits for the window.
        limits = FlowLimits(max_tasks_per_minute=1)
        async with Client(key, base_url=emu.base_url, limits=limits, share=redis.url) as other:
            assert (await other.run(model, {"prompt": "first"})).ok
            leases_key = f"{{ws:{other._namespace}}}:leases"
        raw = aioredis.from_url(redis.url)
        proc = await anyio.open_process(
            [*cmd, "--base-url", emu.base_url, "--share", redis.url], cwd=ROOT, env=env
        )
        try:
            with anyio.fail_after(30):
                while not await raw.zcard(leases_key):
                    await anyio.sleep(0.05)  # until the batch holds its slot
        finally:
            proc.kill()
            await proc.wait()
            await raw.aclose()
        assert len(emu.stats().tasks) == 1  # the batch sent nothing
        with Journal.open(out / "journal.sqlite3") as journal:
            rec = journal.get(1)
            assert rec is not None and rec.state == "pending", rec
        # So a re-run submits it (a job left "submitting" would be held back as unknown).
        done = await anyio.run_process(
            [*cmd, "--base-url", emu.base_url], cwd=ROOT, env=env, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        assert len(emu.stats().tasks) == 2
    with Journal.open(out / "journal.sqlite3") as journal:
        rec = journal.get(1)
        assert rec is not None and rec.state == "completed", rec


@pytest.mark.parametrize("command", ["batch", "run"])
@pytest.mark.parametrize("share", ["unreachable", "http"])
async def test_a_share_that_cannot_be_used_is_a_usage_error_and_nothing_is_sent(
    tmp_path: Path, command: str, share: str
) -> None:
    url = (
        f"redis://user:s3cret-pw@127.0.0.1:{free_port()}/0"
        if share == "unreachable"
        else "http://user:s3cret-pw@127.0.0.1:8080/"
    )
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "never sent"}) + "\n")
    args = (
        ["batch", str(jobs), "--model", "wavespeed-ai/flux-kontext-dev"]
        if command == "batch"
        else ["run", "wavespeed-ai/flux-kontext-dev", "--prompt", "never sent"]
    )
    env = {**os.environ, "WAVESPEED_API_KEY": "wsk-cli-share-test"}
    async with Emulator(EmulatorConfig(seed=8, latency=SHORT)) as emu:
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", *args, "-o", str(tmp_path / "out"),
            "--base-url", emu.base_url, "--share", url,
        ]  # fmt: skip
        r = await anyio.run_process(cmd, cwd=ROOT, env=env, check=False)
        stats = emu.stats()
    stderr = r.stderr.decode()
    assert r.returncode == 2, stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    assert "error: --share: " in stderr
    assert ("cannot reach" if share == "unreachable" else "allowed: a Redis URL") in stderr
    assert "s3cret-pw" not in stderr
    assert stats.requests_total == 0


async def test_run_with_a_share_holds_a_lease_that_batches_count(
    tmp_path: Path, redis: RedisServer
) -> None:
    import redis.asyncio as aioredis

    from wavespeed_async import Client

    key = "wsk-cli-share-test"
    env = {**os.environ, "WAVESPEED_API_KEY": key}
    async with Emulator(EmulatorConfig(seed=8, latency=LatencyProfile.fast())) as emu:
        async with Client(key, base_url=emu.base_url, share=redis.url) as same_account:
            leases_key = f"{{ws:{same_account._namespace}}}:leases"
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", "run", "wavespeed-ai/flux-kontext-dev",
            "--prompt", "shared [latency:3000]", "-o", str(tmp_path), "--base-url",
            emu.base_url, "--share", redis.url, "--json",
        ]  # fmt: skip
        raw = aioredis.from_url(redis.url)
        proc = await anyio.open_process(cmd, cwd=ROOT, env=env)
        try:
            with anyio.fail_after(30):  # its task holds one of the account's slots
                while not await raw.zcard(leases_key):
                    await anyio.sleep(0.05)
                assert await proc.wait() == 0
            assert not await raw.zcard(leases_key)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await raw.aclose()
        assert emu.stats().tasks_completed == 1
