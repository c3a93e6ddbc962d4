"""The share against a hostile writer of its Redis.

Anything that can write to its Redis, using plain Redis commands, can neither deliver a
result nor stop the account's processes for good.

Each test plants what such a writer can plant (forged results, junk messages, huge numbers,
fake leases), or makes the server slow or absent, and checks what the Clients do.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.redis._helpers import slow_proxy
from tests.services import RedisServer
from wavespeed_async import Client, FlowLimits, PollConfig, Prediction
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.redis import RedisShare

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODEL = "wavespeed-ai/flux-kontext-dev"
EVIL = "https://evil.example/forged.png"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=7, latency=LatencyProfile.fast())) as emu:
        yield emu


@pytest.fixture
async def writer(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """The hostile writer: a plain Redis connection."""
    conn = aioredis.from_url(redis.url)
    try:
        yield conn
    finally:
        await conn.aclose()


def make_client(
    emulator: Emulator,
    share: object,
    *,
    poll: PollConfig | None = None,
    max_retry_after_s: float = 60.0,
    key: str = CANARY_KEY,
    **limits: object,
) -> Client:
    return Client(
        key,
        base_url=emulator.base_url,
        poll=poll or fast_poll(),
        retry=dataclasses.replace(fast_retry(), max_retry_after_s=max_retry_after_s),
        limits=FlowLimits(**limits),  # type: ignore[arg-type]
        share=share,  # type: ignore[arg-type]
    )


def share_of(client: Client) -> RedisShare:
    share = client._share
    assert isinstance(share, RedisShare)
    return share


def prefix(client: Client) -> str:
    return f"{{ws:{share_of(client).namespace}}}"


def forged(task_id: str, status: str = "completed") -> bytes:
    pred = Prediction(id=task_id, model=MODEL, status=status, outputs=[EVIL])
    return msgspec.json.encode(pred)


async def test_forged_results_published_or_stored_by_any_writer_are_never_delivered(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis
) -> None:
    async with make_client(emulator, redis.url) as a:
        share = share_of(a)
        p = prefix(a)
        pred = await a.submit(MODEL, {"prompt": "real [latency:800]"})
        channel = f"{p}:events"
        result: list[Prediction] = []

        async def waiter() -> None:
            result.append(await a.wait(pred, timeout=20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # the wait is pending
            payload = forged(pred.id)
            # An unsigned delivery (what a RedisShare published before results were
            # signed), one with a made-up tag, and one for the task that failed.
            await writer.publish(channel, b"d" + b"evil\n" + payload)
            await writer.publish(
                channel, b"devil\n" + pred.id.encode() + b"\n" + b"0" * 64 + b"\n" + payload
            )
            await writer.publish(channel, b"devil\n" + forged(pred.id, "failed"))
            # And a stored one, for a wait that starts later.
            await writer.set(f"{p}:r:{pred.id}", payload)
        assert result[0].outputs != [EVIL] and result[0].status == "completed"
        assert result[0].outputs and result[0].outputs[0].startswith(emulator.base_url)
        # A later wait finds the forged stored result, refuses it, and polls instead.
        again = await a.wait(pred.id, timeout=20)
        assert again.outputs == result[0].outputs
        assert share.rejected == 4
        assert "rejected=4" in repr(share)


async def test_a_signed_result_moved_to_another_task_or_unfinished_is_not_used(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis
) -> None:
    slow = PollConfig(webhook_fallback_s=30.0)
    async with (
        make_client(emulator, redis.url, poll=slow) as a,
        make_client(emulator, redis.url) as b,
    ):
        p = prefix(a)
        other = Prediction(id="tsk-other", model=MODEL, status="completed", outputs=[EVIL])
        b.deliver(other)  # genuine, signed: the result of tsk-other
        share_of(b).publish(Prediction(id="tsk-running", model=MODEL, status="processing"))
        with anyio.fail_after(5):
            while await writer.exists(f"{p}:r:tsk-other", f"{p}:r:tsk-running") != 2:
                await anyio.sleep(0.01)
        pred = await a.submit(MODEL, {"prompt": "mine"}, webhook="http://127.0.0.1:9/hook")
        # The writer copies the genuine result of another task to this one's key.
        genuine = await writer.get(f"{p}:r:tsk-other")
        assert isinstance(genuine, bytes)
        await writer.set(f"{p}:r:{pred.id}", genuine)
        assert await share_of(a).stored_result(pred.id) is None
        assert await share_of(a).stored_result("tsk-running") is None  # signed, not final
        got = await share_of(a).stored_result("tsk-other")  # in its own place it is used
        assert got is not None and got.outputs == [EVIL]
        # The unfinished one was refused as it was announced too.
        assert share_of(a).rejected == 3


async def test_a_huge_number_or_deep_nesting_on_the_channel_does_not_end_the_listener(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "wavespeed_async.redis")
    slow = PollConfig(webhook_fallback_s=30.0)  # only a shared delivery ends the wait soon
    async with (
        make_client(emulator, redis.url, poll=slow) as a,
        make_client(emulator, redis.url) as b,
    ):
        channel = f"{prefix(a)}:events"
        pred = await a.submit(MODEL, {"prompt": "x"}, webhook="http://127.0.0.1:9/hook")
        deep = b"[" * 100_000 + b"]" * 100_000
        for junk in (
            b"c" + b"9" * 400,  # OverflowError once divided into seconds
            b"devil\n" + deep,  # RecursionError in a decoder
            b"devil\n" + pred.id.encode() + b"\n" + b"f" * 64 + b"\n" + deep,
            b"c" + b"9" * 400,
            b"x",
        ):
            assert await writer.publish(channel, junk) == 2  # a's and b's listeners
        result: list[Prediction] = []

        async def waiter() -> None:
            result.append(await a.wait(pred, timeout=20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            b.deliver(Prediction(id=pred.id, model=MODEL, status="completed", outputs=["u"]))
            with anyio.fail_after(5):  # a's listener still reads: it wakes at once
                while not result:
                    await anyio.sleep(0.001)
        assert result[0].outputs == ["u"]
        assert share_of(a).rejected == 5
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "ignored" in r.message
    ]
    # Once per kind of junk and Client, not once per message.
    assert len([r for r in warnings if "not a number" in r.message]) == 2


async def test_a_cool_down_planted_in_the_share_is_cut_to_max_retry_after(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis
) -> None:
    async with make_client(
        emulator, redis.url, max_retry_after_s=1.0, max_tasks_per_minute=100
    ) as a:
        p = prefix(a)
        await writer.set(f"{p}:cool", 10**15)  # stored: ends in 30,000 years
        await writer.publish(f"{p}:events", b"c" + b"9" * 15)  # announced: 30,000 years
        with anyio.fail_after(5):
            while a.flow.cooldown.delay(a.flow.now()) == 0:
                await anyio.sleep(0.001)
        assert a.flow.cooldown.delay(a.flow.now()) <= 1.0
        with anyio.fail_after(5):
            await a.flow.acquire_start()
        # A process that starts later reads the stored one, cut down too.
        await writer.set(f"{p}:cool", 10**15)
        async with make_client(
            emulator, redis.url, max_retry_after_s=1.0, max_tasks_per_minute=100
        ) as c:
            assert 0 < c.flow.cooldown.delay(c.flow.now()) <= 1.0
            with anyio.fail_after(5):
                await c.flow.acquire_start()
                assert (await c.run(MODEL, {"prompt": "after the planted cool-down"})).ok


async def test_planted_or_lost_leases_never_deadlock_the_account(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis
) -> None:
    async with (
        make_client(emulator, redis.url, max_in_flight=2) as a,
        make_client(emulator, redis.url, max_in_flight=2) as b,
    ):
        p = prefix(a)
        held = [object(), object()]
        for token in held:
            await a.flow.acquire_slot(token)
        # A total and held counts as an earlier design kept them, set absurdly high...
        await writer.set(f"{p}:total", 10**9)
        await writer.hset(f"{p}:held", mapping={"ghost": 10**9})
        # ...leases that never expire, or expire in ten years...
        await writer.zadd(f"{p}:leases", {"fake-1": float("inf"), "fake-2": 2e15})
        await writer.zadd(f"{p}:procs", {"ghost": float("inf")})
        # ...and one of a's real leases lost (an eviction, a failover).
        real = await writer.zrangebyscore(f"{p}:leases", 0, 1e14)
        if real:  # (a design that counts slots elsewhere has none here to lose)
            assert isinstance(real[0], bytes)
            await writer.zrem(f"{p}:leases", real[0])
        for token in held:
            a.flow.release_slot(token)
        tokens = [object(), object()]
        with anyio.fail_after(5):
            for token in tokens:
                await b.flow.acquire_slot(token)
        with anyio.move_on_after(0.3) as scope:  # and the cap still holds
            await a.flow.acquire_slot(object())
        assert scope.cancelled_caught
        for token in tokens:
            b.flow.release_slot(token)
        assert share_of(b).live_processes == 2  # the ghost holder was reaped


async def test_while_the_server_is_away_the_slots_already_held_count(
    emulator: Emulator, redis: RedisServer
) -> None:
    share_a = RedisShare(redis.url, reconnect_interval_s=30.0, socket_timeout_s=1.0)
    async with (
        make_client(emulator, share_a, max_in_flight=8) as a,
        make_client(emulator, redis.url, max_in_flight=8) as b,
    ):
        token_b = object()
        await b.flow.acquire_slot(token_b)  # a sees 2 live processes on its next call
        held = [object() for _ in range(6)]
        for token in held:
            await a.flow.acquire_slot(token)
        assert share_a.live_processes == 2
        redis.stop()
        await share_a.stored_result("tsk-x")  # notices the outage
        assert "away" in repr(share_a)
        # a's local share is 8 // 2 = 4, and it holds 6 already: nothing more until it
        # holds fewer than 4.
        with anyio.move_on_after(0.3) as scope:
            await a.flow.acquire_slot(object())
        assert scope.cancelled_caught
        for token in held[:3]:
            a.flow.release_slot(token)
        with anyio.fail_after(2):
            await a.flow.acquire_slot(object())
        with anyio.move_on_after(0.3) as scope:
            await a.flow.acquire_slot(object())
        assert scope.cancelled_caught


async def test_a_slow_server_counts_as_away_instead_of_serialising_every_slot(
    emulator: Emulator, redis: RedisServer
) -> None:
    async with slow_proxy(redis.port, 1.0) as proxy:
        share = RedisShare(proxy.url, reconnect_interval_s=0.05, socket_timeout_s=5.0)
        async with make_client(emulator, share, max_in_flight=8) as a:
            tokens = [object() for _ in range(8)]
            with anyio.fail_after(6):  # one call a second: 8 s if each slot asked the server
                async with anyio.create_task_group() as tg:
                    for token in tokens:
                        tg.start_soon(a.flow.acquire_slot, token)
            assert "away" in repr(share) and share.outages == 1
            with anyio.move_on_after(0.3) as scope:  # the local share still holds the cap
                await a.flow.acquire_slot(object())
            assert scope.cancelled_caught
            proxy.delay_s = 0.0  # fast again: sharing resumes, the slots held registered
            with anyio.fail_after(15):
                while share.reconnects == 0:
                    await anyio.sleep(0.02)
            assert "connected" in repr(share)
            async with aioredis.from_url(redis.url) as raw:
                assert await raw.zcard(f"{prefix(a)}:leases") == 8
            for token in tokens:
                a.flow.release_slot(token)


async def test_no_redis_call_is_made_for_a_start_where_no_shared_window_applies(
    emulator: Emulator, redis: RedisServer, writer: aioredis.Redis
) -> None:
    async def scripts_run() -> int:
        stats = await writer.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))

    async with make_client(emulator, redis.url) as a:
        before = await scripts_run()
        for _ in range(20):
            handle = await a.flow.acquire_start()
            a.flow.start_sent(handle)
        assert await scripts_run() == before


async def test_two_accounts_on_one_server_do_not_accept_each_other_s_results(
    emulator: Emulator, redis: RedisServer
) -> None:
    ns = "one-namespace-for-both"
    async with (
        make_client(emulator, RedisShare(redis.url, namespace=ns)) as a,
        make_client(emulator, RedisShare(redis.url, namespace=ns), key="wsk-another-account") as b,
    ):
        b.deliver(Prediction(id="tsk-shared-id", model=MODEL, status="completed", outputs=[EVIL]))
        with anyio.fail_after(5):
            while share_of(a).rejected == 0:  # a hears it on the channel, and refuses it
                await anyio.sleep(0.01)
        assert await share_of(a).stored_result("tsk-shared-id") is None
        assert await share_of(b).stored_result("tsk-shared-id") is not None
