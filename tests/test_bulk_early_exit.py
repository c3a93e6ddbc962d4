"""Leaving ``run_many`` early accounts for every task it created: ids or ``unknown``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import Client, FlowLimits, ValidationError
from wavespeed_async.emulator import Emulator, EmulatorConfig, FaultRates, LatencyProfile

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"


def _emulator(*, stall_after: float, stall_s: float) -> Emulator:
    # Submits that stall after creating their task: many are in flight at any moment.
    return Emulator(
        EmulatorConfig(
            seed=11,
            latency=LatencyProfile.fast(),
            submit_faults=FaultRates(stall_after=stall_after),
            stall_s=stall_s,
        )
    )


def _client(emu: Emulator) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        limits=FlowLimits(max_in_flight=None),
        seed=3,
    )


def _workers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "BulkRun" in repr(t.get_coro())]


@pytest.mark.parametrize("how", ["break", "raise", "failing-inputs", "cancel"])
async def test_leaving_early_under_load_loses_no_created_task(how: str) -> None:
    async def inputs() -> AsyncIterator[dict[str, Any]]:
        for i in range(300):
            if how == "failing-inputs" and i == 120:
                raise OSError("the input file went away")
            yield {"prompt": f"job {i}"}

    delivered: list[str] = []

    def consumer_fails() -> None:
        raise KeyError("the consumer failed")

    async with _emulator(stall_after=0.3, stall_s=0.4) as emu, _client(emu) as client:
        run = client.run_many(PRO, inputs(), concurrency=64)
        raised: BaseException | None = None
        with anyio.CancelScope() as outer:
            try:
                async with run as results:
                    async for r in results:
                        if r.id is not None:
                            delivered.append(r.id)
                        if len(delivered) == 40:
                            if how == "break":
                                break
                            if how == "raise":
                                consumer_fails()
                            if how == "cancel":
                                outer.cancel()
                                await anyio.lowlevel.checkpoint()
            except (KeyError, OSError) as exc:
                raised = exc
        expected = {"raise": KeyError, "failing-inputs": OSError}.get(how)
        assert type(raised) is expected if expected else raised is None
        assert how != "cancel" or outer.cancelled_caught
        created = emu.stats().tasks_created
        assert _workers() == []
    # Submits stalled in flight at the exit learned their ids within the grace.
    assert run.abandoned, "the test must leave with tasks in flight"
    assert run.unknown == []
    assert not set(delivered) & set(run.abandoned)
    assert created == len(delivered) + len(run.abandoned) + len(run.unknown)


async def test_submits_unanswered_after_the_grace_are_reported_unknown() -> None:
    async with _emulator(stall_after=1.0, stall_s=10.0) as emu, _client(emu) as client:
        run = client.run_many(
            PRO, [{"prompt": f"job {i}"} for i in range(40)], concurrency=12, submit_grace_s=0.05
        )
        async with run:
            # Every submit stalls after creating its task: wait until 12 are in doubt.
            while emu.stats().tasks_created < 12:
                await anyio.sleep(0.01)
        created = emu.stats().tasks_created
        assert _workers() == []
    assert created == 12
    assert run.abandoned == []
    assert run.unknown == list(range(12))
    assert created == len(run.abandoned) + len(run.unknown)


@pytest.mark.parametrize("grace", [-1.0, float("nan"), float("inf"), "5"])
async def test_submit_grace_is_validated(client: Client, grace: Any) -> None:
    with pytest.raises(ValidationError, match="submit_grace_s"):
        client.run_many(PRO, [], submit_grace_s=grace)


class _Halt(BaseException):
    """Not an Exception: no job or input handler turns it into a result."""


async def test_a_worker_ended_by_a_base_exception_stops_the_other_workers_at_once() -> None:
    # The other worker's job waits for a task of about a minute, behind its worker's
    # shielded scope: the task group's cancellation does not reach it, the batch's
    # teardown (the consumer, cancelled by the failing worker) does.
    async def inputs() -> AsyncIterator[dict[str, Any]]:
        yield {"prompt": "a slow task"}
        raise _Halt

    slow = Emulator(EmulatorConfig(seed=11, latency=LatencyProfile.realistic().scaled(20)))
    async with slow as emu, _client(emu) as client:
        run = client.run_many(PRO, inputs(), concurrency=2)
        with anyio.fail_after(20), pytest.raises(BaseException) as caught:  # noqa: PT011
            async with run as results:
                async for _ in results:
                    pass
    assert caught.group_contains(_Halt), repr(caught.value)
    assert _workers() == []
