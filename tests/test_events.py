"""Events: what a Client tells about each task, in order, to listeners and streams."""

from __future__ import annotations

import gc
import itertools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest

from tests.conftest import CANARY_KEY, NullShare, fast_poll, fast_retry
from wavespeed_async import (
    BulkResult,
    Client,
    ClientClosedError,
    CompletedEvent,
    CooldownEvent,
    CreatedEvent,
    DeliveredEvent,
    DroppedEvent,
    EndEvent,
    Event,
    FailedEvent,
    PermissionDeniedError,
    Prediction,
    RetryEvent,
    StatusEvent,
    TaskTimeoutError,
    UnknownEvent,
    ValidationError,
    WaitingEvent,
)
from wavespeed_async._core.events import EVENT_KINDS, TERMINAL_KINDS, event_decoder
from wavespeed_async.emulator import Emulator, EmulatorConfig, FaultRates, LatencyProfile

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"


def make_client(emu: Emulator, **kwargs: Any) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        transport=emu.transport(),
        poll=fast_poll(),
        retry=fast_retry(),
        seed=1,
        **kwargs,
    )


@pytest.fixture
async def faulty() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(
        seed=11,
        latency=LatencyProfile.fast(),
        submit_faults=FaultRates(rate_limit=0.15, reset_after=0.05, server_error_before=0.1),
        poll_faults=FaultRates(server_error_before=0.1, reset_before=0.1),
    )
    async with Emulator(config) as emu:
        yield emu


def twenty_inputs() -> list[dict[str, str]]:
    # Some tasks run long enough to be seen processing; two fail on the server.
    inputs = []
    for i in range(20):
        prompt = f"job {i}"
        if i % 4 == 1:
            prompt += " [latency:150]"
        if i in (6, 13):
            prompt += " [fail:1200]"
        inputs.append({"prompt": prompt})
    return inputs


async def test_twenty_jobs_under_faults_tell_each_task_in_order_and_nothing_after_its_end(
    faulty: Emulator,
) -> None:
    faulty.force_fault("rate_limit", on="submit", times=2)  # a 429 for sure
    told: list[Event] = []
    results: list[BulkResult[Any]] = []
    async with make_client(faulty, on_event=told.append) as client:
        streamed: list[Event] = []
        async with client.events() as stream:
            async with client.run_many(DEV, twenty_inputs(), concurrency=6) as run:
                results.extend([r async for r in run])
            while (ev := stream.get_nowait()) is not None:
                streamed.append(ev)
        unknown = run.unknown
    assert streamed == told  # the stream and the listener see the same events, in order
    assert {e.kind for e in told} <= set(EVENT_KINDS)

    by_index: dict[int, list[Event]] = defaultdict(list)
    for ev in told:
        if ev.index is not None:
            by_index[ev.index].append(ev)
    assert sorted(by_index) == list(range(20))  # every job is told, with its index
    stats = faulty.stats()
    for r in results:
        evs = by_index[r.index]
        assert evs[0].kind == "submitting"
        assert len({e.ref for e in evs}) == 1  # one follow per job, one ref
        ends = [i for i, e in enumerate(evs) if e.terminal]
        assert ends == [len(evs) - 1], [e.kind for e in evs]  # one end, and it is the last
        end = evs[-1]
        if r.id is not None:
            (created,) = [e for e in evs if isinstance(e, CreatedEvent)]
            assert created.task_id == r.id
            assert evs.index(created) < len(evs) - 1
            assert all(e.task_id == r.id for e in evs[evs.index(created) :])
            # Nothing about that task after its end, from any follow.
            last = max(i for i, e in enumerate(told) if e.task_id == r.id)
            assert told[last] is end
            assert isinstance(end, EndEvent) and stats.tasks[r.id].status == end.status
        if r.ok:
            assert isinstance(end, CompletedEvent)
            assert end.outputs == r.outputs and end.polls >= 1
        elif r.index in unknown:
            assert isinstance(end, UnknownEvent) and end.task_id is None
        else:
            assert isinstance(end, FailedEvent)
            assert end.error_type == type(r.error).__name__
    assert {r.index for r in results if r.ok} == {
        e.index for e in told if isinstance(e, CompletedEvent)
    }
    created_ids = {e.task_id for e in told if isinstance(e, CreatedEvent)}
    assert created_ids <= set(stats.tasks)
    # The only tasks not told as created are those of submits told as unknown.
    assert 0 <= stats.tasks_created - len(created_ids) <= len(unknown)
    # The faults were seen: retries with their causes, and the 429 pause.
    retries = [e for e in told if isinstance(e, RetryEvent)]
    assert {"rate_limit"} <= {e.cause for e in retries}
    assert {e.request for e in retries} <= {"submit", "poll"}
    assert any(isinstance(e, CooldownEvent) and e.seconds > 0 for e in told)
    assert any(isinstance(e, StatusEvent) and e.status == "processing" for e in told)
    # The failures the emulator was told to make are told as failures, with their code.
    # (A job whose submit drew a fault after creation has no task id to fail: which job
    # draws it depends on the order concurrent submits reach the emulator.)
    failed = [e for e in told if isinstance(e, FailedEvent) and e.status == "failed"]
    made = {r.index for r in results if r.index in (6, 13) and r.id is not None}
    assert made, "neither [fail] job got a task"
    assert {e.index for e in failed} == made and {e.code for e in failed} == {1200}
    # Times run forwards, on both clocks.
    assert all(a.at <= b.at for a, b in itertools.pairwise(told))


async def test_a_slow_reader_loses_the_oldest_events_and_is_told_how_many(
    emulator: Emulator,
) -> None:
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        stream = client.events(buffer=5)
        async with client.run_many(DEV, [{"prompt": f"p{i}"} for i in range(20)]) as run:
            async for _ in run:
                assert len(stream._buffer) <= 5  # memory never grows past the buffer
        first = await anext(stream)
        rest = [stream.get_nowait() for _ in range(5)]
        assert stream.get_nowait() is None
    assert isinstance(first, DroppedEvent)
    assert first.count == stream.dropped == len(told) - 5
    assert rest == told[-5:]  # the newest were kept
    async for _ in stream:  # the Client closed: the stream ends
        raise AssertionError("nothing more was buffered")


async def test_a_listener_that_raises_changes_nothing_and_is_logged_once(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in the listener")

    seen: list[Event] = []
    caplog.set_level(logging.ERROR, logger="wavespeed_async")
    async with make_client(emulator, on_event=broken) as client:
        client.add_event_listener(seen.append)  # a listener after it still gets every event
        results = [r async for r in _run(client, 8)]
        pred = await client.run(DEV, {"prompt": "one more"})
    assert all(r.ok for r in results) and pred.ok
    assert calls == len(seen) == client.event_errors > 0
    logged = [r for r in caplog.records if "event listener raised" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    stats = emulator.stats()
    assert stats.tasks_created == 9 and stats.duplicate_prompts == []


async def _run(client: Client, n: int) -> AsyncIterator[BulkResult[Any]]:
    async with client.run_many(DEV, [{"prompt": f"r{i}"} for i in range(n)]) as run:
        async for r in run:
            yield r


async def test_without_a_subscriber_no_event_is_built(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wavespeed_async._core import events as core
    from wavespeed_async._runtime import events as runtime

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an event was built with no one listening")

    for name in core.__all__:
        if name.endswith("Event") and hasattr(runtime, name):
            monkeypatch.setattr(runtime, name, refuse)
    monkeypatch.setattr(runtime.Events, "emit", refuse)
    emulator.force_fault("rate_limit", on="submit", times=1)
    emulator.force_fault("server_error", on="poll", times=1)
    async with make_client(emulator) as client:
        results = [r async for r in _run(client, 6)]
        assert not client._events.active
    assert all(r.ok for r in results)


async def test_a_task_stream_starts_with_its_status_and_ends_with_its_end(
    emulator: Emulator,
) -> None:
    async with make_client(emulator) as client:
        pred = await client.submit(DEV, {"prompt": "slow [latency:300]"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.wait, pred)
            await anyio.sleep(0.1)  # the wait has seen it processing
            stream = client.events(pred.id)
            seen = [ev async for ev in stream]
    kinds = [e.kind for e in seen]
    assert kinds[0] == "status" and kinds[-1] == "completed", kinds
    assert isinstance(seen[0], StatusEvent) and seen[0].status == "processing"
    assert all(e.task_id == pred.id for e in seen)


async def test_two_waits_of_one_task_are_one_follow_with_one_end(emulator: Emulator) -> None:
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        pred = await client.submit(DEV, {"prompt": "shared [latency:200]"})
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.wait, pred)
            # A wait that gives up while the other goes on tells nothing.
            with pytest.raises(TaskTimeoutError):
                await client.wait(pred.id, timeout=0.05)
            # A third wait, started later, is the same follow: one end is told.
            await client.wait(pred.id)
    mine = [e.kind for e in told if e.task_id == pred.id]
    assert mine.count("completed") == 1 and mine[-1] == "completed", mine
    assert "timeout" not in mine and "waiting" not in mine


async def test_a_wait_of_an_id_from_elsewhere_is_told_from_its_start(emulator: Emulator) -> None:
    async with make_client(emulator) as first:
        pred = await first.submit(DEV, {"prompt": "elsewhere [latency:150]"})
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        async with client.wait_many([pred.id]) as run:
            results = [r async for r in run]
    assert results[0].ok
    assert told[0].kind == "waiting"
    assert isinstance(told[0], WaitingEvent) and told[0].index == 0
    assert told[-1].kind == "completed" and told[-1].index == 0
    assert len({e.ref for e in told}) == 1


async def test_a_timeout_and_a_cancelled_wait_are_told_as_their_ends(emulator: Emulator) -> None:
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        a = await client.submit(DEV, {"prompt": "a [latency:5000]"})
        b = await client.submit(DEV, {"prompt": "b [latency:5000]"})
        with pytest.raises(TaskTimeoutError):
            await client.wait(a, timeout=0.05)
        with anyio.move_on_after(0.05):
            await client.wait(b)
        c = await client.submit(DEV, {"prompt": "c [latency:5000]"})

        async def wait_c() -> None:
            with pytest.raises(ClientClosedError):
                await client.wait(c)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_c)
            await anyio.sleep(0.02)
            await client.aclose()
    ends = {e.task_id: e for e in told if e.terminal}
    assert ends[a.id].kind == "timeout" and ends[a.id].limit_s == 0.05  # type: ignore[attr-defined]
    assert ends[b.id].kind == "abandoned" and ends[b.id].reason == "cancelled"  # type: ignore[attr-defined]
    assert ends[c.id].kind == "abandoned" and ends[c.id].reason == "closed"  # type: ignore[attr-defined]


async def test_a_delivery_that_wakes_a_wait_is_told(emulator: Emulator) -> None:
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        pred = await client.submit(DEV, {"prompt": "pushed [latency:5000]"})
        done = Prediction(id=pred.id, model=DEV, status="completed", outputs=["https://x/y.png"])
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.wait, pred)
            await anyio.sleep(0.02)
            assert client.is_waiting(pred.id)
            assert client.deliver(done)
        assert not client.is_waiting(pred.id)
    delivered = [e for e in told if isinstance(e, DeliveredEvent)]
    assert len(delivered) == 1 and not delivered[0].remote
    end = told[-1]
    assert isinstance(end, CompletedEvent) and end.delivered and end.detect_s is None
    assert end.outputs == ["https://x/y.png"]


async def test_a_submit_refused_is_told_as_failed_without_a_task() -> None:
    told: list[Event] = []
    broke = EmulatorConfig(seed=1, initial_balance=0, enforce_balance=True)
    async with Emulator(broke) as emu, make_client(emu, on_event=told.append) as client:
        with pytest.raises(PermissionDeniedError):
            await client.run(DEV, {"prompt": "x"})
    kinds = [e.kind for e in told]
    assert kinds == ["submitting", "failed"]
    end = told[-1]
    assert isinstance(end, FailedEvent) and end.task_id is None and end.http_status == 403
    assert end.error_type == "InsufficientBalanceError" and end.ref == told[0].ref


async def test_events_round_trip_through_json() -> None:
    ev = CompletedEvent(
        at=1.5, time=2.5, task_id="abc", index=3, ref=7, outputs=["u"], model="m", polls=2
    )
    raw = msgspec.json.encode(ev)
    assert msgspec.json.decode(raw)["kind"] == "completed"
    assert event_decoder.decode(raw) == ev
    assert ev.kind == "completed" and ev.terminal
    assert {"completed", "failed", "unknown", "timeout", "abandoned"} == TERMINAL_KINDS


async def test_bad_arguments_are_refused_with_the_field_named(emulator: Emulator) -> None:
    with pytest.raises(ValidationError, match="on_event"):
        make_client(emulator, on_event="print")
    async with make_client(emulator) as client:
        with pytest.raises(ValidationError, match="buffer"):
            client.events(buffer=0)
        with pytest.raises(ValidationError, match="task"):
            client.events("../etc")


async def test_a_stream_no_longer_referenced_stops_receiving(emulator: Emulator) -> None:
    def listened(client: Client) -> bool:
        return client._events.active

    async with make_client(emulator) as client:
        stream = client.events()
        assert listened(client)
        del stream
        gc.collect()
        assert not listened(client)
        remove = client.add_event_listener(lambda e: None)
        assert listened(client)
        remove()
        remove()
        assert not listened(client)


async def test_a_job_declined_before_its_send_tells_nothing(emulator: Emulator) -> None:
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append) as client:
        inputs = [{"prompt": f"d{i}"} for i in range(4)]
        async with client.run_many(DEV, inputs, on_submitting=lambda i: i != 2) as run:
            results = {r.index: r async for r in run}
    assert type(results[2].error).__name__ == "SubmitSkipped"
    assert {e.index for e in told} == {0, 1, 3}  # nothing about the job never sent
    assert next(e.kind for e in told if e.index == 0) == "submitting"


class _LocalShare(NullShare):
    """A share of one process: what another process would tell arrives by hand."""

    def bind(self, limits: Any, **kwargs: Any) -> None:
        self.on_delivery = kwargs["on_delivery"]
        self.on_cooldown = kwargs["on_cooldown"]

    async def first_delivery(self, delivery_id: str, ttl_s: float) -> bool | None:
        return None


async def test_what_another_process_tells_through_the_share_is_told_as_remote(
    emulator: Emulator,
) -> None:
    share = _LocalShare()
    told: list[Event] = []
    async with make_client(emulator, on_event=told.append, share=share) as client:
        share.on_cooldown(0.01)  # another process was answered 429
        pred = await client.submit(DEV, {"prompt": "remote [latency:5000]"})
        done = Prediction(id=pred.id, model=DEV, status="completed", outputs=["https://x/y.png"])
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.wait, pred)
            await anyio.sleep(0.02)
            share.on_delivery(done)  # its webhook reached another process
    cooldown = next(e for e in told if isinstance(e, CooldownEvent))
    assert cooldown.remote and cooldown.seconds == 0.01 and cooldown.task_id is None
    delivered = next(e for e in told if isinstance(e, DeliveredEvent))
    assert delivered.remote and delivered.task_id == pred.id
    assert isinstance(told[-1], CompletedEvent) and told[-1].delivered
