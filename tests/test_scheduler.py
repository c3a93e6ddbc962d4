"""The Client's poll scheduler: the pure heap, batching, the budget, cancellation, deadlines."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll
from wavespeed_async import (
    Client,
    ClientClosedError,
    FlowLimits,
    NotFoundError,
    PollConfig,
    Prediction,
    TaskTimeoutError,
    ValidationError,
)
from wavespeed_async._core.schedule import DurationEstimator
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.waits.heap import POLL_GRID_S, PollEntry, PollHeap
from wavespeed_async._runtime.waits.scheduler import PollScheduler, WaitExpired
from wavespeed_async.emulator import Emulator

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"

CONFIG = PollConfig(expected_duration_s=0.05, min_interval_s=0.005, max_interval_s=0.05)


def entry(task_id: str = "t", *, started: float = 0.0, deadline: float | None = None) -> PollEntry:
    return PollEntry(
        task_id,
        started=started,
        estimator=DurationEstimator.from_config(CONFIG),
        learn=True,
        webhook=False,
        deadline=deadline,
        last=None,
    )


# -- the heap (pure) -----------------------------------------------------------------------


def test_heap_is_due_at_the_earliest_window_end_and_pops_every_opened_window() -> None:
    heap = PollHeap()
    a, b, c, d = entry("a"), entry("b"), entry("c"), entry("d")
    heap.push(a, 1.00, 0.96)
    heap.push(b, 1.03, 0.99)  # window open at 1.00: sent with a
    heap.push(c, 1.20, 1.16)  # not yet
    heap.push(d, 0.98)  # no window: earliest = due
    assert heap.next_due() == 0.98
    assert heap.pop_due(0.975) == [a]  # a's window opened at 0.96, d's opens only at 0.98
    assert heap.pop_due(0.98) == [d]
    assert heap.next_due() == 1.03
    assert heap.pop_due(1.03) == [b]
    assert len(heap) == 1
    assert heap.next_due() == 1.20
    assert heap.pop_due(1.20) == [c]
    assert heap.next_due() is None
    assert len(heap) == 0


def test_heap_reschedule_replaces_and_remove_unschedules() -> None:
    heap = PollHeap()
    a, b = entry("a"), entry("b")
    heap.push(a, 1.0)
    heap.push(a, 2.0)  # rescheduled: the item at 1.0 is stale
    heap.push(b, 1.5)
    assert len(heap) == 2
    assert heap.next_due() == 1.5
    assert heap.pop_due(1.9) == [b]
    heap.remove(a)
    heap.remove(a)  # idempotent
    assert len(heap) == 0
    assert heap.pop_due(10.0) == []
    assert heap.next_due() is None


def test_heap_stays_bounded_when_entries_are_rescheduled_many_times() -> None:
    heap = PollHeap()
    entries = [entry(str(i)) for i in range(10)]
    for round_ in range(1000):
        for i, e in enumerate(entries):
            heap.push(e, 1000.0 - round_ + i * 0.001)
    assert len(heap) == 10
    assert len(heap._by_hi) <= 2 * 10 + 64 + 1
    assert len(heap._by_lo) <= 2 * 10 + 64 + 1
    assert heap.pop_due(10_000.0) == entries  # earliest window first, each once


def test_entry_window_follows_the_schedule_and_clamps_to_the_deadline() -> None:
    e = entry(started=0.0)
    earliest, due = e.next_due(0.0, CONFIG)
    assert earliest < due
    assert round(due / POLL_GRID_S, 6) == round(due / POLL_GRID_S)  # on the grid
    # Already inside the last 50 ms before the deadline: the schedule is left as it is.
    assert entry(started=0.0, deadline=0.03).next_due(0.0, CONFIG) == (earliest, due)
    slow = PollConfig(expected_duration_s=3.0)
    soon = entry(started=0.0, deadline=0.2)
    soon.estimator = DurationEstimator.from_config(slow)
    # The first poll would come after a second: it is pulled in before the deadline.
    assert soon.next_due(0.0, slow)[1] == pytest.approx(0.15)


# -- the scheduler on a loop ---------------------------------------------------------------


class FakeServer:
    """Answers polls: each task is running for its first ``running`` polls, then completed."""

    def __init__(self, running: int = 0) -> None:
        self.running = running
        self.sent: list[str] = []
        self.gate: asyncio.Event | None = None
        self.cancelled = 0
        self.error: Exception | None = None

    async def send(self, entry: PollEntry) -> Prediction:
        task_id = entry.task_id
        self.sent.append(task_id)
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.error is not None:
            raise self.error
        status = "processing" if self.sent.count(task_id) <= self.running else "completed"
        return Prediction(id=task_id, status=status)


def scheduler(server: FakeServer, limits: FlowLimits | None = None) -> PollScheduler:
    loop = asyncio.get_running_loop()
    flow = FlowControl(limits or FlowLimits(max_polls_per_s=None), clock=loop.time)
    return PollScheduler(loop, server.send, CONFIG, flow)


async def test_polls_due_together_are_sent_in_one_timer_pass() -> None:
    server = FakeServer()
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    futures = [sched.add(entry(f"t{i}", started=now)) for i in range(50)]
    results = await asyncio.gather(*futures)
    assert [r.id for r in results] == [f"t{i}" for i in range(50)]
    assert sched.wakeups == 1
    assert sched.dispatched == 50
    assert len(sched) == 0


async def test_a_running_task_is_rescheduled_without_waking_its_waiter() -> None:
    server = FakeServer(running=3)
    sched = scheduler(server)
    e = entry("t", started=asyncio.get_running_loop().time())
    fut = sched.add(e)
    woken = 0

    def count(_f: object) -> None:
        nonlocal woken
        woken += 1

    fut.add_done_callback(count)
    result = await fut
    assert result.status == "completed"
    assert server.sent == ["t"] * 4
    assert e.polls == 4
    assert woken == 1
    assert e.estimator.count == 1  # learned from the detection


async def test_the_poll_budget_spreads_polls_and_every_wait_still_ends() -> None:
    server = FakeServer()
    # 50 polls/s with a burst of 5: 8 polls due at once go out as 5 now, 3 over ~60 ms.
    sched = scheduler(server, FlowLimits(max_polls_per_s=50.0))
    now = asyncio.get_running_loop().time()
    futures = [sched.add(entry(f"t{i}", started=now)) for i in range(8)]
    first = await futures[0]
    assert first.status == "completed"
    assert sched.dispatched == 5
    await asyncio.gather(*futures)
    assert sched.dispatched == 8
    assert sorted(server.sent) == sorted(f"t{i}" for i in range(8))


async def test_the_estimator_window_grows_to_the_tasks_in_flight() -> None:
    server = FakeServer()
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    shared = DurationEstimator.from_config(CONFIG)
    entries = [entry(f"t{i}", started=now) for i in range(300)]
    for e in entries:
        e.estimator = shared
    futures = [sched.add(e) for e in entries]
    assert shared.window == 300  # more than the configured 256: a whole wave is kept
    await asyncio.gather(*futures)
    assert shared.count == 300


async def test_a_poll_error_reaches_its_waiter_only() -> None:
    server = FakeServer()
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    server.error = NotFoundError("no such task", status=404)
    bad = sched.add(entry("bad", started=now))
    with pytest.raises(NotFoundError):
        await bad
    server.error = None
    good = sched.add(entry("good", started=now))
    assert (await good).ok
    assert len(sched) == 0


async def test_discard_cancels_the_poll_in_flight_and_forgets_the_entry() -> None:
    server = FakeServer()
    server.gate = asyncio.Event()
    sched = scheduler(server)
    e = entry("t", started=asyncio.get_running_loop().time())
    sched.add(e)
    while not server.sent:
        await asyncio.sleep(0.005)
    assert e.request is not None
    sched.discard(e)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert server.cancelled == 1
    assert len(sched) == 0
    assert sched.deliver(Prediction(id="t", status="completed")) is False


async def test_deliver_ends_every_wait_for_the_task() -> None:
    server = FakeServer(running=1000)
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    a, b = sched.add(entry("t", started=now)), sched.add(entry("t", started=now))
    other = sched.add(entry("u", started=now))
    done = Prediction(id="t", status="completed")
    assert sched.deliver(done) is True
    assert await a is done
    assert await b is done
    assert not other.done()
    assert sched.deliver(Prediction(id="t", status="completed")) is False
    sched.close()
    with pytest.raises(ClientClosedError):
        await other


async def test_a_deadline_fails_the_wait_and_cancels_its_poll_in_flight() -> None:
    server = FakeServer()
    server.gate = asyncio.Event()  # the poll never gets its answer
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    e = entry("t", started=now, deadline=now + 0.1)
    fut = sched.add(e)
    with pytest.raises(WaitExpired):
        await fut
    assert asyncio.get_running_loop().time() >= now + 0.1 - 0.002  # not before its time
    await asyncio.sleep(0)
    assert server.cancelled == 1
    assert len(sched) == 0


async def test_waits_that_end_first_leave_no_deadline_behind() -> None:
    server = FakeServer()
    sched = scheduler(server)
    now = asyncio.get_running_loop().time()
    for round_ in range(3):
        entries = [entry(f"t{round_}-{i}", started=now, deadline=now + 600) for i in range(100)]
        results = await asyncio.gather(*(sched.add(e) for e in entries))
        assert all(r.ok for r in results)
        assert not any(e.timed for e in entries)
    # Expired items are skipped and compacted: at most the live ones plus a margin remain.
    assert len(sched._deadlines) <= 64 + 100
    # With nothing left to poll, the timer is not kept armed for a stale deadline.
    assert sched._timer is None


# -- through the Client --------------------------------------------------------------------


async def test_cancelling_one_wait_leaves_no_entry_and_no_poll(emulator: Emulator) -> None:
    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as client:
        slow = await client.submit(PRO, {"prompt": "slow [latency:60000]"})
        other = await client.submit(PRO, {"prompt": "quick"})
        with anyio.move_on_after(0.2):
            await client.wait(slow.id)
        sched = client._waiting().scheduler
        assert len(sched) == 0
        record = emulator.task(slow.id)
        assert record is not None and record.polls >= 1
        # A poll already on the wire when the wait was cancelled may still reach the
        # server; a full round trip for another task lets it land before counting.
        assert (await client.wait(other)).ok
        record = emulator.task(slow.id)
        assert record is not None
        polls_before = record.polls
        await anyio.sleep(0.2)  # several poll intervals of fast_poll()
        record = emulator.task(slow.id)
        assert record is not None and record.polls == polls_before
        assert len(sched) == 0


async def test_a_deadline_raises_with_the_last_state_seen(emulator: Emulator) -> None:
    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as client:
        pred = await client.submit(PRO, {"prompt": "slow [latency:60000]"})
        with pytest.raises(TaskTimeoutError) as info:
            await client.wait(pred, timeout=0.2)
        assert info.value.task_id == pred.id
        last = info.value.last
        assert last is not None and last.id == pred.id
        assert last.status in ("created", "processing")
        assert client.polls_sent >= 2  # the last state came from a poll, not the submit
        assert len(client._waiting().scheduler) == 0


async def test_aclose_ends_pending_waits(emulator: Emulator) -> None:
    client = Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll())
    pred = await client.submit(PRO, {"prompt": "slow [latency:60000]"})
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await client.wait(pred)
        except ClientClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.05)
        await client.aclose()
    assert len(errors) == 1


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
async def test_a_bad_wait_timeout_is_refused_before_anything_else(
    emulator: Emulator, timeout: float
) -> None:
    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as client:
        pred = await client.run(PRO, {"prompt": "quick"})
        requests = emulator.stats().requests_total
        # Even a task already known to be done: the call itself is wrong.
        for task in (pred, pred.id):
            with pytest.raises(ValidationError, match=r"timeout.*allowed: a finite number > 0"):
                await client.wait(task, timeout=timeout)
        assert emulator.stats().requests_total == requests
