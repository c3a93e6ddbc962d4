"""A batch killed while its jobs wait out a 429: they are re-sendable, not "unknown".

Every submit of the first run is answered 429 (with ``Retry-After: 60``), which proves no
task was created, and starts a cool-down that every job not yet sent waits out before it is
sent. The batch is killed (SIGKILL) meanwhile. The next run submits every job, once, and
holds nothing back.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.jobs.journal import Journal

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]
MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"
KEY = "wsk-cli-resend-test"
N = 5


def states(path: Path) -> list[str]:
    with Journal.open(path) as journal:
        return [r.state for r in journal.all()]


async def test_jobs_waiting_out_a_429_when_the_batch_is_killed_are_sent_by_the_next_run(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"prompt": f"refused {i}"}) + "\n" for i in range(N)))
    out = tmp_path / "out"
    env = {**os.environ, "WAVESPEED_API_KEY": KEY}
    config = EmulatorConfig(seed=9, latency=LatencyProfile.fast(), retry_after_s=60)
    async with Emulator(config) as emu:
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs), "-o", str(out),
            "--model", MODEL, "--base-url", emu.base_url, "--concurrency", str(N), "-q",
        ]  # fmt: skip
        emu.force_fault("rate_limit", on="submit", times=N)
        proc = await anyio.open_process(cmd, cwd=ROOT, env=env)
        try:
            with anyio.fail_after(30):
                while not emu.stats().faults:
                    await anyio.sleep(0.02)  # the 429 was answered: every job waits ~60 s
            with anyio.move_on_after(10):
                while states(out / "journal.sqlite3") != ["pending"] * N:
                    await anyio.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert emu.stats().tasks_created == 0
        with Journal.open(out / "journal.sqlite3") as journal:
            recs = journal.all()
        # Sent and refused, or never sent: re-sendable, not "a task may exist".
        assert [(r.state, r.task_id) for r in recs] == [("pending", None)] * N
        assert sum(r.attempts for r in recs) == emu.stats().submits_received >= 1
        emu._faults._forced["submit"].clear()  # the 429s the first run never met
        done = await anyio.run_process(cmd, cwd=ROOT, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        stats = emu.stats()
    assert "unknown" not in done.stderr.decode()
    assert stats.tasks_created == N and stats.duplicate_prompts == []
    assert states(out / "journal.sqlite3") == ["completed"] * N


async def test_a_journal_whose_unfinished_task_another_key_created_is_not_resumed_with_this_one(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "runs a minute [latency:60000]"}) + "\n")
    out = tmp_path / "out"
    async with Emulator(EmulatorConfig(seed=9, latency=LatencyProfile.fast())) as emu:
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs), "-o", str(out),
            "--model", MODEL, "--base-url", emu.base_url, "-q",
        ]  # fmt: skip
        proc = await anyio.open_process(cmd, cwd=ROOT, env={**os.environ, "WAVESPEED_API_KEY": KEY})
        try:
            with anyio.fail_after(30):
                while states(out / "journal.sqlite3") != ["created"]:
                    await anyio.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        other = {**os.environ, "WAVESPEED_API_KEY": "wsk-another-account"}
        done = await anyio.run_process(cmd, cwd=ROOT, env=other, check=False)
        assert done.returncode == 2
        assert "created with another API key" in done.stderr.decode()
        assert emu.stats().tasks_created == 1 and emu.stats().polls_total == 0
    assert states(out / "journal.sqlite3") == ["created"]  # kept for the right key
    assert KEY not in (out / "journal.sqlite3").read_bytes().decode("latin-1")
