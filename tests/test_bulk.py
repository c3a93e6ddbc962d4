"""run_many / wait_many against the emulator: order, laziness, limits, faults, early exit."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll
from wavespeed_async import (
    AuthenticationError,
    Client,
    FlowLimits,
    FluxKontextProTextToImage,
    RetryConfig,
    SubmissionOutcomeUnknown,
    SubmitSkipped,
    TaskFailedError,
    ValidationError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, FaultRates, LatencyProfile, Limits

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"


def jobs(n: int, tag: str = "job") -> list[dict[str, Any]]:
    return [{"prompt": f"{tag} {i}"} for i in range(n)]


async def test_results_come_in_completion_order(client: Client) -> None:
    inputs = [{"prompt": f"slow {i} [latency:400]"} for i in range(3)]
    inputs.append({"prompt": "fast [latency:1]"})
    async with client.run_many(PRO, inputs, concurrency=4) as results:
        order = [r.index async for r in results]
    assert order[0] == 3
    assert sorted(order) == [0, 1, 2, 3]


async def test_ordered_mode_yields_in_input_order(client: Client) -> None:
    inputs = [{"prompt": f"job {i} [latency:{(10 - i) * 15}]"} for i in range(10)]
    async with client.run_many(PRO, inputs, concurrency=5, ordered=True) as results:
        got = [r async for r in results]
    assert [r.index for r in got] == list(range(10))
    assert all(r.ok for r in got)
    assert [r.input for r in got] == inputs


async def test_inputs_are_consumed_lazily(client: Client) -> None:
    concurrency = 8
    pulled = 0
    ahead: list[int] = []
    holder: dict[str, Any] = {}

    def gen() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(200):
            pulled += 1
            run = holder.get("run")
            done = run.progress.done if run is not None else 0
            ahead.append(pulled - done)
            yield {"prompt": f"lazy {i}"}

    run = client.run_many(PRO, gen(), concurrency=concurrency)
    holder["run"] = run
    async with run as results:
        n = 0
        async for r in results:
            assert r.ok
            n += 1
            # Never more than 2x concurrency taken from the inputs and not yet delivered.
            assert pulled - n <= 2 * concurrency
    assert n == 200
    # A job is taken from the inputs only when a worker is free to run it.
    assert max(ahead) <= concurrency


async def test_async_iterable_inputs_and_typed_requests(client: Client) -> None:
    async def gen() -> AsyncIterator[FluxKontextProTextToImage]:
        for i in range(20):
            yield FluxKontextProTextToImage(prompt=f"typed {i}")

    async with client.run_many(None, gen(), concurrency=6) as results:
        got = [r async for r in results]
    assert len(got) == 20 and all(r.ok for r in got)


async def test_a_bad_job_is_a_result_not_an_exception(client: Client, emulator: Emulator) -> None:
    inputs: list[Any] = [
        {"prompt": "good 1"},
        {"prompt": "bad", "num_images": 9},
        "not a dict",
        {"prompt": "fails [fail:5000]"},
        {"prompt": "good 2"},
    ]
    async with client.run_many(PRO, inputs, concurrency=3) as results:
        by_index = {r.index: r async for r in results}
    assert by_index[0].ok and by_index[4].ok
    assert isinstance(by_index[1].error, ValidationError)
    assert by_index[1].id is None
    assert isinstance(by_index[2].error, ValidationError)
    failed = by_index[3]
    assert isinstance(failed.error, TaskFailedError)
    assert failed.id is not None and failed.prediction is not None
    assert failed.prediction.status == "failed"
    assert emulator.stats().tasks_created == 3


async def test_a_bad_key_ends_the_batch() -> None:
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast(), api_key="right")
    async with Emulator(config) as emu, Client("wrong", base_url=emu.base_url) as c:
        with pytest.raises(AuthenticationError):
            async with c.run_many(PRO, jobs(50), concurrency=4) as results:
                async for _ in results:
                    pass
        assert emu.stats().tasks_created == 0


async def test_a_failing_input_iterator_raises(client: Client) -> None:
    def gen() -> Iterator[dict[str, Any]]:
        yield {"prompt": "one"}
        raise RuntimeError("the caller's generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        async with client.run_many(PRO, gen(), concurrency=2) as results:
            async for _ in results:
                pass


async def test_thousand_jobs_with_faults_give_one_result_each_and_no_duplicates() -> None:
    faults = FaultRates(
        rate_limit=0.02,
        server_error_before=0.02,
        server_error_after=0.02,
        reset_before=0.02,
        reset_after=0.02,
        malformed=0.02,
    )
    config = EmulatorConfig(
        seed=11,
        latency=LatencyProfile.fast(),
        submit_faults=faults,
        poll_faults=FaultRates(
            rate_limit=0.02, server_error_before=0.02, reset_before=0.02, malformed=0.02
        ),
        failure_rate=0.02,
    )
    n = 1200
    created: list[str] = []
    async with (
        Emulator(config) as emu,
        Client(
            CANARY_KEY,
            base_url=emu.base_url,
            poll=fast_poll(),
            retry=RetryConfig(
                max_attempts=10, backoff_base_s=0.001, max_backoff_s=0.01, max_retry_after_s=0.01
            ),
            limits=FlowLimits(max_in_flight=100, max_polls_per_s=None),
            seed=5,
        ) as c,
    ):
        async with c.run_many(
            PRO, jobs(n), on_task_created=lambda i, tid: created.append(tid)
        ) as results:
            got = [r async for r in results]
        stats = emu.stats()

    assert sorted(r.index for r in got) == list(range(n))  # exactly one result per job
    assert stats.duplicate_prompts == []  # no job was ever submitted twice
    ids = [r.id for r in got if r.id is not None]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(created)
    unknown = [r for r in got if isinstance(r.error, SubmissionOutcomeUnknown)]
    assert unknown, "the fault rates should have produced some lost answers"
    assert all(r.id is None for r in unknown)
    # Every task the server created is either in a result or behind a lost answer.
    after = sum(stats.faults.get(k, {}).get("after", 0) for k in stats.faults)
    assert stats.tasks_created == len(ids) + after
    assert len(unknown) >= after
    ok = sum(r.ok for r in got)
    assert ok > n * 0.8


async def test_in_flight_cap_holds_as_observed_by_the_emulator(emulator: Emulator) -> None:
    async with Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=fast_poll(),
        limits=FlowLimits(max_in_flight=5),
    ) as c:
        # Two batches and single runs share the one cap.
        async with (
            c.run_many(PRO, jobs(30, "a"), concurrency=10) as a,
            c.run_many(PRO, jobs(30, "b"), concurrency=10) as b,
            anyio.create_task_group() as tg,
        ):
            for i in range(5):
                tg.start_soon(c.run, PRO, {"prompt": f"single {i}"})
            assert len([r async for r in a]) == 30
            assert len([r async for r in b]) == 30
    stats = emulator.stats()
    assert stats.tasks_created == 65
    assert stats.max_running <= 5


async def test_start_rate_limit_holds() -> None:
    async with (
        Emulator(EmulatorConfig(seed=2, latency=LatencyProfile.fast())) as emu,
        Client(
            CANARY_KEY,
            base_url=emu.base_url,
            poll=fast_poll(),
            limits=FlowLimits(max_tasks_per_minute=4),
        ) as c,
    ):
        with anyio.move_on_after(1.0):
            async with c.run_many(PRO, jobs(10), concurrency=10) as results:
                async for _ in results:
                    pass
        # Four starts per minute: in one second, exactly four tasks.
        assert emu.stats().tasks_created == 4


async def test_one_429_cools_every_request_down() -> None:
    config = EmulatorConfig(
        seed=4, latency=LatencyProfile.fast(), limits=Limits(submits_per_minute=3)
    )
    async with (
        Emulator(config) as emu,
        Client(
            CANARY_KEY,
            base_url=emu.base_url,
            poll=fast_poll(),
            retry=RetryConfig(max_retry_after_s=30.0, backoff_base_s=0.01),
        ) as c,
    ):
        with anyio.move_on_after(1.0):
            async with c.run_many(PRO, jobs(40), concurrency=20) as results:
                async for _ in results:
                    pass
        stats = emu.stats()
        # 3 allowed; the first 429 starts a cool-down that holds back all 20 workers, so
        # at most the submits already in flight meet a 429 (not 20 workers x retries).
        assert stats.tasks_created == 3
        assert 1 <= stats.rate_limited <= 17
        assert c.flow.cooldowns_started >= 1


async def test_leaving_early_stops_work_and_reports_abandoned_ids(
    client: Client, emulator: Emulator
) -> None:
    def workers() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if "BulkRun" in repr(t.get_coro())]

    inputs = [{"prompt": "quick [latency:1]"}] + [
        {"prompt": f"long {i} [latency:60000]"} for i in range(7)
    ]
    created: list[str] = []
    all_created = anyio.Event()

    def on_created(index: int, task_id: str) -> None:
        created.append(task_id)
        if len(created) == len(inputs):
            all_created.set()

    run = client.run_many(PRO, inputs, concurrency=8, on_task_created=on_created)
    async with run as results:
        await all_created.wait()
        async for r in results:
            assert r.index == 0
            break
    assert len(run.abandoned) == 7
    assert set(run.abandoned) <= set(emulator.stats().tasks)
    assert workers() == []  # no worker left behind


async def test_cancellation_from_outside_reports_abandoned_ids(client: Client) -> None:
    all_created = anyio.Event()
    created: list[str] = []

    def on_created(index: int, task_id: str) -> None:
        created.append(task_id)
        if len(created) == 5:
            all_created.set()

    run = client.run_many(
        PRO, jobs(5, "long [latency:60000]"), concurrency=5, on_task_created=on_created
    )
    with anyio.CancelScope() as scope:
        async with run as results:
            await all_created.wait()
            scope.cancel()
            async for _ in results:
                pass
    assert scope.cancelled_caught
    assert sorted(run.abandoned) == sorted(created)


async def test_wait_many_resumes_from_ids(emulator: Emulator) -> None:
    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as first:
        ids = [(await first.submit(PRO, {"prompt": f"resume {i}"})).id for i in range(12)]
    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as second:
        async with second.wait_many([*ids, "0" * 32], concurrency=4) as results:
            got = {r.input: r async for r in results}
    assert all(got[i].ok and got[i].id == i for i in ids)
    assert got["0" * 32].error is not None and got["0" * 32].error.task_id == "0" * 32
    assert emulator.stats().tasks_created == 12


async def test_progress_counters_add_up(client: Client) -> None:
    run = client.run_many(PRO, jobs(25), concurrency=5)
    assert run.progress.total == 25
    async with run as results:
        async for _ in results:
            p = run.progress
            assert p.running + p.submitting + p.queued <= 5
    p = run.progress
    assert (p.completed, p.failed, p.running, p.submitting, p.queued) == (25, 0, 0, 0, 0)
    assert p.rate_per_s > 0
    assert "25/25 done" in str(p)


async def test_bulk_settings_are_validated(client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        client.run_many(PRO, [], concurrency=0)
    assert info.value.field == "concurrency"
    with pytest.raises(ValidationError) as info:
        client.run_many(PRO, [], concurrency=8, ordered=True, reorder_window=2)
    assert info.value.field == "reorder_window"


async def test_a_bad_bulk_setting_shows_in_a_traceback_with_its_locals(client: Client) -> None:
    # Formatting with locals calls repr() on the half-built BulkRun.
    with pytest.raises(ValidationError) as info:
        client.run_many(PRO, [], submit_grace_s=-1.0)
    shown = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    assert "submit_grace_s: -1.0" in "".join(shown.format())


async def test_model_and_input_pairs_mix_models_in_one_batch(
    client: Client, emulator: Emulator
) -> None:
    dev = "wavespeed-ai/flux-kontext-dev"
    inputs = [(PRO, {"prompt": "pair pro"}), (dev, {"prompt": "pair dev", "size": "512*512"})]
    async with client.run_many(None, inputs, concurrency=2) as results:
        got = {r.index: r async for r in results}
    assert got[0].ok
    assert got[1].ok
    models = {t.prompt: t.model for t in emulator.stats().tasks.values()}
    assert models == {"pair pro": PRO, "pair dev": dev}


async def test_on_submitting_comes_after_the_limits_and_before_the_request(
    emulator: Emulator,
) -> None:
    calls: list[tuple[int, int]] = []  # (index, tasks the server had at that moment)
    async with Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=fast_poll(),
        limits=FlowLimits(max_tasks_per_minute=1),
    ) as client:

        def submitting(index: int) -> None:
            calls.append((index, len(emulator.stats().tasks)))

        async with client.run_many(PRO, jobs(3), concurrency=3, on_submitting=submitting) as run:
            first = await anext(aiter(run))
            assert first.ok
            # The two others wait for the start window (a minute): never reported as sent.
        assert calls == [(first.index, 0)]
        assert run.unknown == [] and len(emulator.stats().tasks) == 1


async def test_on_submitting_returning_false_skips_that_job_and_the_batch_goes_on(
    emulator: Emulator,
) -> None:
    def submitting(index: int) -> bool | None:
        return False if index % 2 else None  # None (a hook that returns nothing): sent

    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as client:
        async with client.run_many(PRO, jobs(4), concurrency=2, on_submitting=submitting) as run:
            got = {r.index: r async for r in run}
    assert [got[i].ok for i in range(4)] == [True, False, True, False]
    for i in (1, 3):
        assert got[i].id is None and isinstance(got[i].error, SubmitSkipped)
        assert got[i].input == {"prompt": f"job {i}"}
    assert run.unknown == [] and run.abandoned == []
    p = run.progress
    assert (p.completed, p.failed, p.skipped, p.submitting, p.done) == (2, 0, 2, 0, 4)
    assert str(p).startswith("4/4 done (2 ok, 0 failed, 2 skipped); ")
    assert sorted(t.prompt for t in emulator.stats().tasks.values()) == ["job 0", "job 2"]


async def test_a_failing_on_submitting_sends_nothing_and_ends_the_batch(
    emulator: Emulator,
) -> None:
    class Refused(Exception):
        pass

    def submitting(index: int) -> None:
        raise Refused(index)

    async with Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll()) as client:
        with pytest.raises(Refused):
            async with client.run_many(PRO, jobs(2), on_submitting=submitting) as run:
                async for _ in run:
                    pass
    assert len(emulator.stats().tasks) == 0
