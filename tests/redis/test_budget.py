"""The account-wide spending budget through a real redis-server.

Several Clients in one process, each with its own share, as several processes would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import RedisServer
from wavespeed_async import BudgetExceeded, Client, FlowLimits, ValidationError
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.redis import RedisShare

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODEL = "wavespeed-ai/flux-kontext-dev"
QUOTE = Decimal("0.025")


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=7, latency=LatencyProfile.fast())) as emu:
        yield emu


def make_client(emulator: Emulator, share: RedisShare, budget: str) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        limits=FlowLimits(budget_usd=budget),
        share=share,
    )


async def run(client: Client, name: str, n: int) -> list[bool]:
    async with client.run_many(MODEL, [{"prompt": f"{name}{i}"} for i in range(n)]) as results:
        return [r.ok async for r in results]


async def test_two_clients_with_one_budget_spend_at_most_it(
    emulator: Emulator, redis: RedisServer
) -> None:
    a_share, b_share = RedisShare(redis.url), RedisShare(redis.url)
    async with (
        make_client(emulator, a_share, "0.25") as a,
        make_client(emulator, b_share, "0.25") as b,
    ):
        done: dict[str, list[bool]] = {}

        async def go(c: Client, name: str) -> None:
            done[name] = await run(c, name, 8)

        async with anyio.create_task_group() as tg:
            tg.start_soon(go, a, "a")
            tg.start_soon(go, b, "b")
        status = a.spend_status()
        with pytest.raises(BudgetExceeded) as info:
            await b.run(MODEL, {"prompt": "one more"})
    assert sum(done["a"]) + sum(done["b"]) == 10
    assert emulator.stats().charged_usd == Decimal("0.25")
    assert status.scope == "account" and status.budget_usd == Decimal("0.25")
    assert info.value.scope == "account" and info.value.committed_usd == Decimal("0.25")


async def test_budgets_with_other_names_are_counted_apart_and_a_reset_starts_again(
    emulator: Emulator, redis: RedisServer
) -> None:
    nightly = RedisShare(redis.url, budget_name="nightly")
    daily = RedisShare(redis.url, budget_name="daily")
    async with (
        make_client(emulator, nightly, "0.05") as a,
        make_client(emulator, daily, "0.05") as b,
    ):
        assert sum(await run(a, "a", 3)) == 2
        assert sum(await run(b, "b", 3)) == 2  # its own budget
        await nightly.reset_spend()
        assert sum(await run(a, "c", 3)) == 2
    with pytest.raises(ValidationError, match="budget_name"):
        RedisShare(redis.url, budget_name="no spaces")


async def test_a_refund_goes_back_to_the_shared_budget(
    emulator: Emulator, redis: RedisServer
) -> None:
    share = RedisShare(redis.url)
    async with make_client(emulator, share, "0.05") as a:
        inputs = [{"prompt": "[fail] a"}, {"prompt": "b"}, {"prompt": "c"}]
        async with a.run_many(MODEL, inputs, concurrency=1) as results:
            ended = [r async for r in results]
        assert all(r.id is not None for r in ended)
        with anyio.fail_after(5):  # the release reaches the server in background
            while share.spent() != 50_000:
                await anyio.sleep(0.01)


async def test_a_restarted_server_learns_the_committed_spend_again(
    emulator: Emulator, redis: RedisServer
) -> None:
    a_share = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    b_share = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    async with (
        make_client(emulator, a_share, "0.1") as a,
        make_client(emulator, b_share, "0.1") as b,
    ):
        assert sum(await run(a, "a", 3)) == 3
        redis.stop()
        redis.start()  # empty: it forgot the $0.075 committed
        with anyio.fail_after(10):  # both notice (their subscriptions drop) and come back
            while a_share.reconnects == 0 or b_share.reconnects == 0:
                await anyio.sleep(0.02)
            while b_share.spent() != 75_000:  # a told the server again what it committed
                await b_share.reserve_spend(0, 100_000)
                await anyio.sleep(0.02)
        assert sum(await run(b, "b", 3)) == 1
    assert emulator.stats().charged_usd == Decimal("0.1")


async def test_while_the_server_is_away_each_process_commits_only_its_part(
    emulator: Emulator, redis: RedisServer
) -> None:
    a_share = RedisShare(redis.url, reconnect_interval_s=30.0, socket_timeout_s=1.0)
    b_share = RedisShare(redis.url, reconnect_interval_s=30.0, socket_timeout_s=1.0)
    async with (
        make_client(emulator, a_share, "0.2") as a,
        make_client(emulator, b_share, "0.2") as b,
    ):
        assert sum(await run(a, "a", 2)) == 2  # $0.05 committed; a saw both processes
        await run(b, "b", 0)
        for share in (a_share, b_share):
            await share.reserve_spend(0, 200_000)  # each learns the total and live count
        a_share.live_processes = b_share.live_processes = 2
        redis.stop()
        # $0.15 was left: each may commit half of it alone, $0.075 (3 quotes).
        assert sum(await run(a, "c", 5)) == 3
        assert a_share.spent() == 50_000 and "away" in repr(a_share)
