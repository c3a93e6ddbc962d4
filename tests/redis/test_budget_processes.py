"""Four OS processes, each with its own Client, sharing one spending budget through Redis."""

from __future__ import annotations

import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from tests.services import RedisServer
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
QUOTE = Decimal("0.025")  # one image of flux-kontext-dev


async def _line(stream: ByteReceiveStream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        buffer += await stream.receive()
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


async def test_four_processes_with_one_shared_budget_spend_at_most_it(redis: RedisServer) -> None:
    budget = Decimal("0.25")  # 10 quotes, for 4 processes x 12 jobs
    async with Emulator(EmulatorConfig(seed=11, latency=LatencyProfile.fast())) as emu:
        procs: list[Process] = []
        outs: list[bytearray] = []
        try:
            for i in range(4):
                cmd = [
                    sys.executable, "-m", "tests.redis._spend_worker", emu.base_url, redis.url,
                    f"--name=w{i}", "--jobs=12", f"--budget-usd={budget}",
                ]  # fmt: skip
                procs.append(await anyio.open_process(cmd, cwd=ROOT, stderr=None))
                outs.append(bytearray())
            with anyio.fail_after(60):
                for p, out in zip(procs, outs, strict=True):
                    assert p.stdout is not None
                    assert await _line(p.stdout, out) == b"ready"
            for p in procs:  # all together
                assert p.stdin is not None
                await p.stdin.send(b"go\n")
            done = []
            with anyio.fail_after(60):
                for p, out in zip(procs, outs, strict=True):
                    assert p.stdout is not None
                    done.append(json.loads(await _line(p.stdout, out)))
                    await p.wait()
        finally:
            for p in procs:
                if p.returncode is None:
                    os.kill(p.pid, signal.SIGKILL)
                    await p.wait()
                await p.aclose()
        records = emu.billing_records()
    charged = sum(r.price for r in records if r.billing_type == "deduct")
    refunded = sum(r.price for r in records if r.billing_type == "refund")
    print(f"4 processes, budget {budget}: {done}, billed {charged - refunded}")
    assert charged - refunded <= budget  # the emulator's billing proves it
    assert charged == budget  # and the budget was used, not left idle
    assert sum(d["sent"] for d in done) == budget / QUOTE == 10
    assert sum(d["held_back"] for d in done) == 48 - 10
