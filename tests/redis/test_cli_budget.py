"""``wavespeed-async batch --share --max-spend``: batches in several processes, one budget."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from tests.services import RedisServer
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
#: One key: the share's namespace (and so the budget) is per key and base URL.
ENV = {**os.environ, "WAVESPEED_API_KEY": "wsk-cli-budget-test"}


async def batches(tmp_path: Path, base_url: str, *extra: str) -> list[str]:
    outs: list[str] = []

    async def batch(name: str) -> None:
        jobs = tmp_path / f"{name}.jsonl"
        jobs.write_text("".join(json.dumps({"prompt": f"{name}-{i}"}) + "\n" for i in range(6)))
        cmd = [
            sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs),
            "-o", str(tmp_path / name), "--model", "wavespeed-ai/flux-kontext-dev",
            "--base-url", base_url, *extra,
        ]  # fmt: skip
        done = await anyio.run_process(cmd, cwd=ROOT, env=ENV, check=False)
        assert done.returncode in (0, 1), done.stderr.decode()  # 1: some held back
        outs.append(done.stdout.decode())

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(batch, name)
    return outs


async def test_three_batches_with_a_share_spend_at_most_one_max_spend(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with Emulator(EmulatorConfig(seed=8, latency=LatencyProfile.fast())) as emu:
        args = ("--share", redis.url, "--max-spend", "0.2", "--budget-name", "cli-test")
        outs = await batches(tmp_path, emu.base_url, *args)
        stats = emu.stats()
        # The budget keeps counting: a later batch with the same name sends nothing.
        (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "late"}) + "\n")
        later = await anyio.run_process(
            [sys.executable, "-m", "wavespeed_async.cli", "batch", str(tmp_path / "d.jsonl"),
             "-o", str(tmp_path / "d"), "--model", "wavespeed-ai/flux-kontext-dev",
             "--base-url", emu.base_url, *args],
            cwd=ROOT, env=ENV, check=False,
        )  # fmt: skip
        assert emu.stats().tasks_created == stats.tasks_created
    assert stats.tasks_created == 8  # $0.20 / $0.025, for 18 jobs in three processes
    assert stats.charged_usd == Decimal("0.2")
    assert sum("held back by it" in o for o in outs) >= 2
    assert all("of --max-spend $0.20 (the account's, with --share)" in o for o in outs)
    assert later.returncode == 1 and b"held back" in later.stdout
