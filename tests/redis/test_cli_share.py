"""``wavespeed-async batch --share``: batches in several processes share one account's cap."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from tests.redis._helpers import peak_in_flight
from tests.services import RedisServer
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.emulator._config import LatencyDist

pytestmark = pytest.mark.anyio

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
