"""Several OS processes, each with its own Client, sharing one account through Redis."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from anyio.abc import ByteReceiveStream

from tests.conftest import CANARY_KEY
from tests.redis._helpers import peak_in_flight
from tests.services import RedisServer
from wavespeed_async import Client, FlowLimits, RetryConfig
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile, Limits
from wavespeed_async.emulator._config import LatencyDist
from wavespeed_async.redis import RedisShare

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "wavespeed-ai/flux-kontext-dev"
N_IN_FLIGHT = 4
M_PER_MINUTE = 30
#: Tasks of about 100 ms, so that in-flight tasks of different processes overlap.
SHORT = LatencyProfile(default=LatencyDist((5, 10, 20), (60, 100, 150)))


@pytest.fixture
async def account() -> AsyncIterator[Emulator]:
    """An account limited to M starts a minute (its 429s are counted)."""
    config = EmulatorConfig(seed=3, latency=SHORT, limits=Limits(submits_per_minute=M_PER_MINUTE))
    async with Emulator(config) as emu:
        yield emu


def worker_cmd(base_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.redis._worker", base_url, *args]


async def run_workers(
    base_url: str, share: str | None, n: int = 4, *more: str
) -> list[dict[str, int]]:
    extra = [*(["--share", share] if share else []), *more]
    results: list[dict[str, int]] = []

    async def one(i: int) -> None:
        cmd = worker_cmd(
            base_url,
            f"--name=w{i}",
            "--jobs=12",
            f"--max-in-flight={N_IN_FLIGHT}",
            f"--per-minute={M_PER_MINUTE}",
            "--budget=6",
            *extra,
        )
        done = await anyio.run_process(cmd, cwd=ROOT, check=True)
        results.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


async def test_four_processes_with_a_share_keep_the_account_limits(
    account: Emulator, redis: RedisServer
) -> None:
    await run_workers(account.base_url, redis.url)
    stats = account.stats()
    print(
        f"with share: {stats.tasks_created} started, {stats.rate_limited} 429s, "
        f"peak in flight {peak_in_flight(stats)} (cap {N_IN_FLIGHT})"
    )
    assert stats.rate_limited == 0  # no 429
    assert N_IN_FLIGHT <= stats.tasks_created <= M_PER_MINUTE  # all within one minute
    assert peak_in_flight(stats) <= N_IN_FLIGHT


async def test_four_processes_without_a_share_exceed_the_account_limits(
    account: Emulator,
) -> None:
    """The control: each process keeps the limits alone, and together they break them."""
    await run_workers(account.base_url, None)
    stats = account.stats()
    print(
        f"without share: {stats.tasks_created} started, {stats.rate_limited} 429s, "
        f"peak in flight {peak_in_flight(stats)} (cap {N_IN_FLIGHT})"
    )
    assert stats.rate_limited > 0
    assert peak_in_flight(stats) > N_IN_FLIGHT


async def test_slots_of_a_killed_process_return_within_the_lease_ttl(
    redis: RedisServer,
) -> None:
    ttl = 1.0
    long_tasks = LatencyProfile(default=LatencyDist((1, 1, 1), (60_000, 60_000, 60_000)))
    async with Emulator(EmulatorConfig(seed=4, latency=long_tasks)) as emu:
        cmd = worker_cmd(
            emu.base_url, "--jobs=3", "--max-in-flight=3", "--hold", "--share", redis.url,
            f"--lease-ttl={ttl}",
        )  # fmt: skip
        proc = await anyio.open_process(cmd, cwd=ROOT, stderr=None)
        try:
            assert proc.stdout is not None
            out = b""
            with anyio.fail_after(60):
                while b"holding" not in out:
                    out += await proc.stdout.receive()
            share = RedisShare(redis.url, lease_ttl_s=ttl)
            async with Client(
                CANARY_KEY, base_url=emu.base_url, limits=FlowLimits(max_in_flight=3),
                share=share,
            ) as client:  # fmt: skip
                # All 3 slots of the account are held by the other process.
                with anyio.move_on_after(0.3) as scope:
                    await client.flow.acquire_slot(object())
                assert scope.cancelled_caught
                os.kill(proc.pid, signal.SIGKILL)
                killed = anyio.current_time()
                tokens = [object() for _ in range(3)]
                with anyio.fail_after(ttl + 10):
                    for t in tokens:
                        await client.flow.acquire_slot(t)
                returned_after = anyio.current_time() - killed
                for t in tokens:
                    client.flow.release_slot(t)
            print(f"slots returned {returned_after:.2f} s after kill -9 (ttl {ttl} s)")
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            await proc.aclose()


async def test_a_429_cool_down_in_one_process_holds_back_another(
    account: Emulator, redis: RedisServer
) -> None:
    cooldown_s = 4.0
    async with Client(CANARY_KEY, base_url=account.base_url, share=redis.url) as client:
        # What the transport does on a 429 with Retry-After: 4.
        began = account._scheduler.now()
        client.flow.start_cooldown(cooldown_s)
        # (A cool-down heard from the share is cut to the worker's max_retry_after_s.)
        await run_workers(account.base_url, redis.url, 1, "--max-retry-after=30")
    created = [t.created_at for t in account.stats().tasks.values()]
    assert created
    # The other process started well within the cool-down, yet sent nothing before its end.
    assert min(created) >= began + cooldown_s - 0.1


async def _line(stream: ByteReceiveStream, buffer: bytearray) -> bytes:
    """The next line of a process's output (``buffer`` keeps what came after it)."""
    while b"\n" not in buffer:
        buffer += await stream.receive()
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


async def test_a_real_429_in_one_client_holds_back_a_client_in_another_process(
    redis: RedisServer,
) -> None:
    """A 429 with ``Retry-After`` answered to Client A pauses Client B in another process.

    B has its own process and its own share connection, and waits until the cool-down ends:
    by the emulator's records, B's first request arrives only then, though B was told to go
    well inside it.
    """
    retry_after = 3  # seconds, as the emulator's 429 says
    config = EmulatorConfig(seed=5, latency=SHORT, retry_after_s=retry_after)
    async with Emulator(config) as emu:
        cmd = worker_cmd(
            emu.base_url, "--name=b", "--jobs=3", "--wait-go", "--budget=30", "--share", redis.url,
            "--max-retry-after=30",
        )  # fmt: skip
        proc = await anyio.open_process(cmd, cwd=ROOT, stderr=None)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            out = bytearray()
            with anyio.fail_after(60):
                assert await _line(proc.stdout, out) == b"ready"  # B's Client is open
            share = RedisShare(redis.url)
            retry = RetryConfig(backoff_base_s=0.001, max_retry_after_s=10.0)
            async with (
                Client(CANARY_KEY, base_url=emu.base_url, retry=retry, share=share) as a,
                aioredis.from_url(redis.url) as listener,
                listener.pubsub(ignore_subscribe_messages=True) as events,
                anyio.create_task_group() as tg,
            ):
                # Hear the cool-down as every process of the account hears it.
                await events.subscribe(share._channel)
                emu.force_fault("rate_limit", on="submit")
                sent = emu._scheduler.now()
                tg.start_soon(a.submit, MODEL, {"prompt": "a"})  # 429, then again after it
                try:
                    with anyio.fail_after(10):
                        while True:
                            msg = await events.get_message(timeout=None)
                            if msg is not None and msg["data"].startswith(b"c"):
                                break
                except TimeoutError:
                    pytest.fail("the 429 Client A got started no account-wide cool-down")
                go = emu._scheduler.now()
                await proc.stdin.send(b"go\n")
                with anyio.fail_after(60):
                    done = json.loads(await _line(proc.stdout, out))
            await proc.wait()
        finally:
            if proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
            await proc.aclose()
        stats = emu.stats()
    assert done == {"created": 3, "ok": 3}
    assert stats.faults == {"rate_limit": {"before": 1}}  # the one 429, to A
    # Every submit but that one created a task: a task's created_at is when its submit
    # arrived, and B sends nothing before its first submit.
    assert stats.submits_received == stats.tasks_created + 1 == 5
    b_arrived = sorted(t.created_at for t in stats.tasks.values() if t.prompt.startswith("b-"))
    assert len(b_arrived) == 3
    # The cool-down began after A's submit was sent: it ends no sooner than sent + 3 s.
    cool_end = sent + retry_after
    assert go < cool_end - 1.0, "B was not told to go inside the cool-down"
    # A small margin: the share's clock (Redis TIME) and the emulator's are different clocks.
    assert b_arrived[0] >= cool_end - 0.05, (
        f"B sent {cool_end - b_arrived[0]:.2f} s before the cool-down ended"
    )
