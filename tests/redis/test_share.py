"""RedisShare against a real redis-server.

Several Clients in one process, each with its own share (its own lease holder), as several
processes would have.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.redis._helpers import peak_in_flight
from tests.services import RedisServer, redis_server
from wavespeed_async import (
    Client,
    ConnectError,
    FlowLimits,
    PollConfig,
    Prediction,
    ValidationError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.redis import RedisShare
from wavespeed_async.redis.share import _RecentStarts

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODEL = "wavespeed-ai/flux-kontext-dev"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=7, latency=LatencyProfile.fast())) as emu:
        yield emu


def make_client(
    emulator: Emulator, share: object, poll: PollConfig | None = None, **limits: object
) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=poll or fast_poll(),
        # A cool-down read from the share is cut to max_retry_after_s: room for the tests'.
        retry=dataclasses.replace(fast_retry(), max_retry_after_s=60.0),
        limits=FlowLimits(**limits),  # type: ignore[arg-type]
        share=share,  # type: ignore[arg-type]
    )


async def test_an_unreachable_share_at_startup_is_a_connect_error_without_the_password(
    emulator: Emulator,
) -> None:
    with redis_server(password="s3cret-pw") as server:
        url = server.url
    # The server is stopped now: nothing listens on its port.
    with pytest.raises(ConnectError) as info:
        async with make_client(emulator, url):
            pass
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(RedisShare(url))


def test_a_share_that_is_not_a_redis_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="share"):
        RedisShare("http://127.0.0.1:6379")
    with pytest.raises(ValidationError, match="lease_ttl_s"):
        RedisShare("redis://127.0.0.1:6379", lease_ttl_s=0)


def test_share_none_imports_no_redis() -> None:
    code = (
        "import sys, wavespeed_async; "
        "wavespeed_async.Client('k', base_url='http://127.0.0.1:1'); "
        "assert 'redis' not in sys.modules and 'wavespeed_async.redis' not in sys.modules"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


async def test_two_clients_together_stay_under_one_in_flight_cap(
    emulator: Emulator, redis: RedisServer
) -> None:
    async def batch(client: Client) -> None:
        async with client.run_many(MODEL, [{"prompt": f"p{i}"} for i in range(24)]) as results:
            async for r in results:
                assert r.ok

    async with (
        make_client(emulator, redis.url, max_in_flight=3) as a,
        make_client(emulator, redis.url, max_in_flight=3) as b,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(batch, a)
            tg.start_soon(batch, b)
    stats = emulator.stats()
    assert stats.tasks_created == 48
    assert peak_in_flight(stats) <= 3


async def test_without_a_share_two_clients_exceed_the_cap(emulator: Emulator) -> None:
    """The control for the test above: the same run without a share goes over."""

    async def batch(client: Client) -> None:
        async with client.run_many(MODEL, [{"prompt": f"p{i}"} for i in range(24)]) as results:
            async for _ in results:
                pass

    async with (
        make_client(emulator, None, max_in_flight=3) as a,
        make_client(emulator, None, max_in_flight=3) as b,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(batch, a)
            tg.start_soon(batch, b)
    assert peak_in_flight(emulator.stats()) > 3


async def test_a_delivery_in_one_client_wakes_the_wait_in_another(
    emulator: Emulator, redis: RedisServer
) -> None:
    # A long fallback poll: only the shared delivery can end the wait quickly.
    slow = PollConfig(webhook_fallback_s=30.0)
    async with (
        make_client(emulator, redis.url, poll=slow) as a,
        make_client(emulator, redis.url, poll=slow) as b,
    ):
        pred = await a.submit(MODEL, {"prompt": "x"}, webhook="http://127.0.0.1:9/hook")
        done = Prediction(id=pred.id, model=MODEL, status="completed", outputs=["u"])
        result: list[Prediction] = []

        async def waiter() -> None:
            result.append(await a.wait(pred, timeout=20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # the wait is pending in a
            started = anyio.current_time()
            assert b.deliver(done) is False  # not pending in b
            with anyio.fail_after(5):
                while not result:
                    await anyio.sleep(0.001)
            woke_after = anyio.current_time() - started
        assert result[0].outputs == ["u"]
        assert woke_after < 5  # a poll could not have ended it (fallback 30 s)


async def test_a_delivery_before_the_wait_starts_is_found_by_a_later_wait(
    emulator: Emulator, redis: RedisServer
) -> None:
    async with make_client(emulator, redis.url) as a, make_client(emulator, redis.url) as b:
        done = Prediction(id="tsk-delivered-early", model=MODEL, status="completed", outputs=["o"])
        b.deliver(done)
        with anyio.fail_after(5):
            while True:  # the delivery is stored in the background
                stored = await a._share.stored_result(done.id)  # type: ignore[union-attr]
                if stored is not None:
                    break
                await anyio.sleep(0.005)
        polls = a.polls_sent
        got = await a.wait("tsk-delivered-early", timeout=5)
        assert got.outputs == ["o"]
        assert a.polls_sent == polls  # no request: the stored delivery answered


async def test_a_429_cool_down_in_one_client_pauses_the_other(
    emulator: Emulator, redis: RedisServer
) -> None:
    async with (
        make_client(emulator, redis.url) as a,
        make_client(emulator, redis.url, max_tasks_per_minute=100) as b,
    ):
        a.flow.start_cooldown(2.0)
        with anyio.fail_after(5):
            while b.flow.cooldown.delay(b.flow.now()) == 0:
                await anyio.sleep(0.001)
        assert 1.0 < b.flow.cooldown.delay(b.flow.now()) <= 2.0
        # And a start in b (under a shared window) waits for it on the server's clock too.
        with anyio.move_on_after(0.5) as scope:
            await b.flow.acquire_start()
        assert scope.cancelled_caught


async def test_the_stored_cool_down_alone_holds_back_starts_in_a_process_that_missed_it(
    emulator: Emulator, redis: RedisServer
) -> None:
    """Only the stored cool-down here, apart from its announcement.

    The two ways a cool-down reaches another process, tested apart: a process that was not
    listening when it was announced still waits before a start under a shared window.
    """
    async with (
        make_client(emulator, redis.url) as a,
        make_client(emulator, redis.url, max_tasks_per_minute=100) as b,
    ):
        share_a = a._share
        assert isinstance(share_a, RedisShare)
        # The real script, announced on a channel nobody listens to: only the key is set.
        left_ms = await share_a._call(
            "COOLDOWN", [share_a._k_cool], [2000, share_a._channel + ":unheard", 60_000]
        )
        assert 1000 < int(left_ms) <= 2000
        assert b.flow.cooldown.delay(b.flow.now()) == 0  # b heard nothing...
        with anyio.move_on_after(0.5) as scope:
            await b.flow.acquire_start()  # ...and still waits: the server holds the start
        assert scope.cancelled_caught
        assert emulator.stats().requests_total == 0


async def test_the_announced_cool_down_alone_holds_back_every_request_of_another_process(
    emulator: Emulator, redis: RedisServer
) -> None:
    """Only the announcement this time (no stored key).

    The listening process holds back all its requests, polls and reads included, not only
    starts.
    """
    import redis.asyncio as aioredis

    async with make_client(emulator, redis.url) as b:
        share_b = b._share
        assert isinstance(share_b, RedisShare)
        raw = aioredis.from_url(redis.url)
        try:
            assert await raw.publish(share_b._channel, b"c2000") == 1  # b's listener
            assert await raw.exists(share_b._k_cool) == 0
        finally:
            await raw.aclose()
        with anyio.fail_after(5):
            while b.flow.cooldown.delay(b.flow.now()) == 0:
                await anyio.sleep(0.001)
        assert 1.0 < b.flow.cooldown.delay(b.flow.now()) <= 2.0
        with anyio.fail_after(1):
            await b.flow.acquire_start()  # the server holds nothing back...
        with anyio.move_on_after(0.5) as scope:
            await b.get_result("tsk-held-back")  # ...b itself does, before sending
        assert scope.cancelled_caught
        assert emulator.stats().requests_total == 0


async def test_the_default_namespace_never_contains_the_key(
    emulator: Emulator, redis: RedisServer
) -> None:
    async with make_client(emulator, redis.url, max_in_flight=2) as a:
        await a.run(MODEL, {"prompt": "x"})
        share = a._share
        assert isinstance(share, RedisShare)
        assert share.namespace and CANARY_KEY not in share.namespace
        r = share._redis
        assert r is not None
        keys = [k.decode() if isinstance(k, bytes) else k for k in await r.keys("*")]
        assert keys and all(f"{{ws:{share.namespace}}}" in k for k in keys)
        assert not any(CANARY_KEY in k for k in keys)


async def test_a_restarted_server_loses_no_result_and_sharing_resumes(
    emulator: Emulator, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async.redis")
    share = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    n = 60
    async with make_client(emulator, share, max_in_flight=4) as a:
        seen: list[str] = []
        async with a.run_many(MODEL, [{"prompt": f"p{i}"} for i in range(n)]) as results:
            async for r in results:
                assert r.ok, r.error
                assert r.id is not None
                seen.append(r.id)
                if len(seen) == 10:
                    redis.stop()
                if len(seen) == 20:
                    redis.start()
            with anyio.fail_after(10):
                while share.reconnects == 0:
                    await anyio.sleep(0.01)
        assert share.outages >= 1
        assert "connected" in repr(share)  # account-wide again, not the local fallback
        await a.run(MODEL, {"prompt": "after"})
    stats = emulator.stats()
    assert len(seen) == len(set(seen)) == n
    assert stats.tasks_created == n + 1
    assert stats.duplicate_prompts == []
    assert any("unreachable" in r.message for r in caplog.records)
    assert any("is back" in r.message for r in caplog.records)


async def test_after_a_restart_no_connection_from_before_it_is_used(
    emulator: Emulator, redis: RedisServer
) -> None:
    """Idle pooled connections to the old server are dead, so none is used after a restart.

    One used after the server is back would end sharing again at once (a second outage for
    one restart).
    """
    share = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    async with make_client(emulator, share, max_in_flight=4):

        async def burst() -> None:  # several calls at once: several pooled connections
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(share.stored_result, f"tsk-{i}")

        await burst()
        redis.stop()
        await share.stored_result("tsk-x")  # notices the outage
        assert share.outages == 1
        redis.start()
        with anyio.fail_after(10):
            while share.reconnects == 0:
                await anyio.sleep(0.01)
        await burst()
        assert "connected" in repr(share)
        assert share.outages == 1


async def test_a_restarted_server_learns_the_window_and_cool_down_again(
    emulator: Emulator, redis: RedisServer
) -> None:
    """An empty server after a restart is told the starts and cool-down it lost.

    The processes that made them tell it the starts of the last minute and a cool-down still
    running: the account's limits hold across the restart (for the other processes too).
    """
    share_a = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    share_b = RedisShare(redis.url, reconnect_interval_s=0.05, socket_timeout_s=1.0)
    async with (
        make_client(emulator, share_a, max_tasks_per_minute=3) as a,
        make_client(emulator, share_b, max_tasks_per_minute=3) as b,
    ):
        for _ in range(2):  # two starts while the server is there, one answered
            handle = await a.flow.acquire_start()
        a.flow.start_sent(handle)
        redis.stop()
        with anyio.fail_after(5):
            await a.flow.acquire_start()  # the third, counted locally while it is away
        assert "away" in repr(share_a)
        redis.start()
        with anyio.fail_after(10):  # (b's subscription noticed the outage too)
            while share_a.reconnects == 0 or share_b.outages != share_b.reconnects:
                await anyio.sleep(0.01)
        assert "connected" in repr(share_a) and "connected" in repr(share_b)
        # b's next start meets the window that a rebuilt.
        with anyio.move_on_after(0.5) as scope:
            await b.flow.acquire_start()
        assert scope.cancelled_caught

        # The cool-down too: one started while the server was away reaches b after.
        redis.stop()
        await share_a.stored_result("tsk-x")  # notices the outage
        a.flow.start_cooldown(30.0)
        redis.start()
        with anyio.fail_after(10):
            while share_a.reconnects == 1 or share_b.outages != share_b.reconnects:
                await anyio.sleep(0.01)
        with anyio.fail_after(5):
            while b.flow.cooldown.delay(b.flow.now()) == 0:
                await anyio.sleep(0.01)
        assert 25.0 < b.flow.cooldown.delay(b.flow.now()) <= 30.0


async def test_the_starts_kept_for_a_restart_are_those_of_the_last_window() -> None:
    recent = _RecentStarts(60.0)
    for i in range(100):  # one start a second
        recent.add(f"h:{i}", float(i))
    assert len(recent) == 60  # memory stays one window's worth
    recent.add("h:50", 100.0)  # its submit was answered: counted from then
    pairs = recent.ages_ms(100.5)
    ages = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert ages["h:50"] == 500 and ages["h:99"] == 1500 and ages["h:41"] == 59500
    assert "h:40" not in ages and len(ages) == 59  # h:41 ... h:99


async def test_while_the_server_is_away_each_process_keeps_its_share_of_the_cap(
    emulator: Emulator, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async.redis")
    share_a = RedisShare(redis.url, reconnect_interval_s=30.0, socket_timeout_s=1.0)
    share_b = RedisShare(redis.url, reconnect_interval_s=30.0, socket_timeout_s=1.0)
    async with (
        make_client(emulator, share_a, max_in_flight=4) as a,
        make_client(emulator, share_b, max_in_flight=4) as b,
    ):
        for c in (a, b, a):  # each takes and gives back a slot: a sees 2 live processes
            token = object()
            await c.flow.acquire_slot(token)
            c.flow.release_slot(token)
        assert share_a.live_processes == 2
        redis.stop()
        held = [object(), object()]
        with anyio.fail_after(5):
            for token in held:
                await a.flow.acquire_slot(token)
        assert "away" in repr(share_a)
        with anyio.move_on_after(0.3) as scope:  # 4 // 2 = 2: the third waits
            await a.flow.acquire_slot(object())
        assert scope.cancelled_caught
        for token in held:
            a.flow.release_slot(token)
    assert any("1/2 each" in r.message for r in caplog.records)


async def test_an_unreadable_message_on_the_channel_does_not_stop_the_listener(
    emulator: Emulator, redis: RedisServer
) -> None:
    import redis.asyncio as aioredis

    share = RedisShare(redis.url)
    slow = PollConfig(webhook_fallback_s=30.0)  # only a shared delivery ends it soon
    async with make_client(emulator, share, poll=slow) as a, make_client(emulator, redis.url) as b:
        pred = await a.submit(MODEL, {"prompt": "x"}, webhook="http://127.0.0.1:9/hook")
        raw = aioredis.from_url(redis.url)
        try:
            # Not what a RedisShare publishes: a cool-down that is not a number, an origin
            # that is not UTF-8. Each is ignored; the listener keeps reading.
            await raw.publish(share._channel, b"cnot-a-number")
            await raw.publish(share._channel, b"d\xff\xfe\n{}")
        finally:
            await raw.aclose()
        done = Prediction(id=pred.id, model=MODEL, status="completed", outputs=["u"])
        result: list[Prediction] = []

        async def waiter() -> None:
            result.append(await a.wait(pred, timeout=20))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # the wait is pending in a, the junk read
            b.deliver(done)
            with anyio.fail_after(5):
                while not result:
                    await anyio.sleep(0.001)
        assert result[0].outputs == ["u"]


async def test_the_http_pool_is_sized_after_the_shares_connections(
    emulator: Emulator, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wavespeed_async._runtime.fdlimit as fdlimit

    monkeypatch.setattr(fdlimit, "open_file_limit", lambda: 256)
    share = RedisShare(redis.url, max_connections=40)
    assert share.connections == 40
    async with make_client(emulator, share, max_connections=200) as client:
        assert (await client.run(MODEL, {"prompt": "p"})).ok
        # 256 files: 64 left to the rest of the process, 40 to the share, the rest
        # split between the Client's two HTTP pools.
        assert client.limits.max_connections == (256 - 64 - 40) // 2


POLLS_PER_S = 20.0


async def polls_of_two_waiting_clients(emulator: Emulator, share: object) -> tuple[int, float]:
    """The polls of two waiting Clients over a window, and its length.

    Two Clients, each with ``max_polls_per_s=POLLS_PER_S``, wait on 8 long tasks each: the
    polls the emulator received over a window once all 16 exist, and the window's length by
    the emulator's clock.
    """
    created = 0
    all_created = anyio.Event()

    def on_created(index: int, task_id: str) -> None:
        nonlocal created
        created += 1
        if created == 16:
            all_created.set()

    async def batch(client: Client, name: str) -> None:
        inputs = [{"prompt": f"[latency:60000] {name} {i}"} for i in range(8)]
        async with client.run_many(MODEL, inputs, on_task_created=on_created) as results:
            async for _ in results:
                pass

    async with (
        make_client(emulator, share, max_polls_per_s=POLLS_PER_S) as a,
        make_client(emulator, share, max_polls_per_s=POLLS_PER_S) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(batch, a, "a")
        tg.start_soon(batch, b, "b")
        with anyio.fail_after(30):
            await all_created.wait()
        began, polls_before = emulator._scheduler.now(), emulator.stats().polls_total
        await anyio.sleep(2.5)  # the measuring window
        ended, polls_after = emulator._scheduler.now(), emulator.stats().polls_total
        tg.cancel_scope.cancel()
    return polls_after - polls_before, ended - began


def one_bucket_bound(seconds: float) -> float:
    """The most polls one bucket lets out in ``seconds``.

    Its rate, plus its burst (``max(1, rate / 10)``, see ``RedisShare.acquire_poll``), plus
    half a second at the rate for the time a poll takes from leaving the bucket to reaching
    the emulator.
    """
    return POLLS_PER_S * (seconds + 0.5) + max(1.0, POLLS_PER_S / 10)


async def test_two_clients_together_stay_within_one_poll_budget(
    emulator: Emulator, redis: RedisServer
) -> None:
    polls, seconds = await polls_of_two_waiting_clients(emulator, redis.url)
    print(f"shared: {polls} polls in {seconds:.2f} s (bound {one_bucket_bound(seconds):.0f})")
    assert polls <= one_bucket_bound(seconds)
    assert polls > 0


async def test_without_a_share_two_clients_exceed_one_poll_budget(emulator: Emulator) -> None:
    """The control for the test above: each Client keeps its own budget.

    Together they poll about twice as often.
    """
    polls, seconds = await polls_of_two_waiting_clients(emulator, None)
    print(f"not shared: {polls} polls in {seconds:.2f} s (bound {one_bucket_bound(seconds):.0f})")
    assert polls > one_bucket_bound(seconds)
