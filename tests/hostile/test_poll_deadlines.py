"""A poll's request deadline, kept by one timer for every poll in flight.

Polls get no aiohttp timer of their own: :class:`Deadlines` cancels the task of a poll past
its ``request_s`` and the transport turns that into the timeout aiohttp would raise, so a
poll is cut and retried as before, while a caller's cancellation stays a cancellation.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

import anyio
import pytest

from tests.hostile.conftest import SHORT, make_client
from tests.hostile.server import HostileServer
from wavespeed_async import ClientClosedError, TaskTimeoutError, Timeouts, TransportError
from wavespeed_async._runtime.waits.deadlines import Deadline, Deadlines

pytestmark = pytest.mark.anyio

TASK = "0123456789abcdef0123456789abcdef"


def _signal(name: str) -> tuple[threading.Event, Callable[[str], str]]:
    """An answer ``name`` for the result, and an event set when a poll reaches the server."""
    arrived = threading.Event()

    def result(_task_id: str) -> str:
        arrived.set()
        return name

    return arrived, result


async def _arrived(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, 10), "no poll reached the server"


def _live_timers(deadlines: Deadlines) -> list[asyncio.TimerHandle]:
    """The loop's pending timers that would call ``deadlines``."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [
        h
        for h in scheduled
        if not h.cancelled() and getattr(h._callback, "__self__", None) is deadlines  # type: ignore[attr-defined]
    ]


# -- through a Client -------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["hang", "trickle"])
async def test_a_poll_is_cut_at_its_deadline_and_retried(
    hostile: HostileServer, answer: str
) -> None:
    # A result that never comes (or comes a byte at a time) ends each poll at request_s
    # (0.3 s), retried once (two attempts), long before the wait's own 5 s.
    hostile.result = answer
    async with make_client(hostile) as client:
        with anyio.fail_after(30):
            with pytest.raises(TransportError) as info:
                await client.wait(TASK)
        transport = client._api
        assert transport is not None and transport.retries == 1
        deadlines = transport._deadlines
        assert deadlines is not None and len(deadlines) == 0
    assert not isinstance(info.value, TaskTimeoutError)
    assert f"no answer within {SHORT.request_s} s" in str(info.value)
    assert info.value.task_id == TASK
    assert hostile.hits[f"/api/v3/predictions/{TASK}/result"] == 2
    if answer == "trickle":
        assert hostile.trickled > 0


async def test_a_cancelled_wait_cancels_its_poll_in_flight(hostile: HostileServer) -> None:
    arrived, hostile.result = _signal("hang")
    async with make_client(hostile) as client:
        waiting = asyncio.ensure_future(client.wait(TASK))
        await _arrived(arrived)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        transport = client._api
        assert transport is not None and transport.retries == 0
        deadlines = transport._deadlines
        assert deadlines is not None
        # The poll's task ended at the cancellation; its deadline went with it.
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(deadlines) == 0
    assert hostile.hits[f"/api/v3/predictions/{TASK}/result"] == 1


async def test_closing_the_client_stops_the_deadline_timer(hostile: HostileServer) -> None:
    arrived, hostile.result = _signal("hang")
    client = make_client(hostile, timeouts=Timeouts(request_s=3600.0, task_s=7200.0))
    async with client:
        waiting = asyncio.ensure_future(client.wait(TASK))
        await _arrived(arrived)
        transport = client._api
        assert transport is not None
        deadlines = transport._deadlines
        assert deadlines is not None and len(deadlines) == 1
        assert len(_live_timers(deadlines)) == 1
    with pytest.raises(ClientClosedError):
        await waiting
    assert len(deadlines) == 0 and not _live_timers(deadlines)
    assert client._api is None


# -- the deadlines alone ----------------------------------------------------------------


async def _request(
    deadlines: Deadlines,
    started: asyncio.Event,
    outcome: list[bool],
    kept: list[Deadline],
) -> str:
    """A request that never gets its answer: ``timeout`` if its deadline cut it."""
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    deadline = deadlines.start()
    kept.append(deadline)
    try:
        started.set()
        await never
    except asyncio.CancelledError:
        outcome.append(deadline.timed_out())
        if not outcome[-1]:
            raise
        return "timeout"
    finally:
        deadline.finish()
    return "answer"


async def test_a_request_past_its_deadline_times_out() -> None:
    deadlines = Deadlines(0.0)
    outcome: list[bool] = []
    task = asyncio.ensure_future(_request(deadlines, asyncio.Event(), outcome, []))
    assert await task == "timeout"
    assert outcome == [True]
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # the cancellation was withdrawn
    assert len(deadlines) == 0
    for _ in range(3):
        await asyncio.sleep(0)
    assert not _live_timers(deadlines)


async def test_a_cancellation_before_the_deadline_propagates() -> None:
    deadlines = Deadlines(3600.0)
    started = asyncio.Event()
    outcome: list[bool] = []
    task = asyncio.ensure_future(_request(deadlines, started, outcome, []))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == [False]
    assert len(deadlines) == 0
    deadlines.close()
    assert not _live_timers(deadlines)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 cannot count cancellations")
async def test_a_cancellation_as_the_deadline_passes_propagates() -> None:
    # The deadline (due at once) and the caller cancel the task before it runs again.
    deadlines = Deadlines(0.0)
    started = asyncio.Event()
    outcome: list[bool] = []
    kept: list[Deadline] = []
    task = asyncio.ensure_future(_request(deadlines, started, outcome, kept))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kept[0].expired  # both cancellations reached the task
    assert outcome == [False]


async def test_the_timer_stops_once_nothing_is_left_to_cut() -> None:
    deadlines = Deadlines(0.0)
    for _ in range(2):
        deadline = deadlines.start()  # arms the timer (due at once) if it is not armed
        deadline.finish()
    assert len(deadlines) == 0 and len(_live_timers(deadlines)) == 1
    for _ in range(3):
        await asyncio.sleep(0)  # loop passes: the timer fires, finds nothing, stops
    assert not _live_timers(deadlines) and deadlines._timer is None


async def test_ended_requests_leave_the_queue_in_order() -> None:
    deadlines = Deadlines(3600.0)
    started = [asyncio.Event() for _ in range(3)]
    kept: list[Deadline] = []
    tasks = [asyncio.ensure_future(_request(deadlines, started[i], [], kept)) for i in range(3)]
    for event in started:
        await event.wait()
    assert len(deadlines) == 3
    tasks[1].cancel()  # the middle one ends first: kept until those before it end
    await asyncio.gather(tasks[1], return_exceptions=True)
    assert len(deadlines) == 3 and kept[1].done
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert len(deadlines) == 1
    tasks[2].cancel()
    await asyncio.gather(tasks[2], return_exceptions=True)
    assert len(deadlines) == 0
    deadlines.close()
    assert not _live_timers(deadlines)


def test_a_deadline_needs_a_task() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="in a task"):
            Deadlines(1.0, loop).start()
    finally:
        loop.close()
