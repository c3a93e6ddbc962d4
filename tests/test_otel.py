"""OpenTelemetry: spans and metrics, read back from the SDK's in-memory exporter and reader."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import Client, CreatedEvent, ValidationError
from wavespeed_async.emulator import Emulator, EmulatorConfig, FaultRates, LatencyProfile
from wavespeed_async.otel import instrument

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"


class Telemetry:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Data points by metric name."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert sm.scope.name == "wavespeed_async"
                for m in sm.metrics:
                    out[m.name] = list(m.data.data_points)
        return out

    def total(self, name: str, **attrs: Any) -> float:
        points = self.metrics().get(name, [])
        values = [
            p.value for p in points if all(p.attributes.get(k) == v for k, v in attrs.items())
        ]
        return float(sum(values))


def attrs(item: Any) -> dict[str, Any]:
    """A span's or a span event's attributes, as plain data."""
    return dict(item.attributes or {})


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


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


def make_client(emu: Emulator) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        transport=emu.transport(),
        poll=fast_poll(),
        retry=fast_retry(),
        seed=1,
    )


async def test_spans_and_metrics_match_the_emulators_records(
    faulty: Emulator, telemetry: Telemetry
) -> None:
    faulty.force_fault("rate_limit", on="submit", times=2)
    prices = {DEV: faulty.catalogue()[DEV].unit_price}
    tracer = telemetry.tracer_provider.get_tracer("the app")
    inputs = []
    for i in range(20):
        prompt = f"job {i}" + (" [latency:120]" if i % 3 == 0 else "")
        inputs.append({"prompt": prompt + (" [fail:1200]" if i == 7 else "")})
    async with make_client(faulty) as client:
        inst = instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            price=prices,
        )
        with tracer.start_as_current_span("the request") as parent:
            async with client.run_many(DEV, inputs, concurrency=5) as run:
                results = [r async for r in run]
        assert inst.open_spans == 0
    stats = faulty.stats()
    spans = [s for s in telemetry.finished() if s.name != "the request"]
    assert len(spans) == 20  # one per job, each ended
    by_task = {attrs(s)["wavespeed.task.id"]: s for s in spans if "wavespeed.task.id" in attrs(s)}
    created = {r.id for r in results if r.id is not None}
    assert set(by_task) == created and created <= set(stats.tasks)
    for task_id, span in by_task.items():
        a = attrs(span)
        record = stats.tasks[task_id]
        assert a["wavespeed.task.status"] == record.status
        assert a["gen_ai.request.model"] == record.model == DEV
        assert a["gen_ai.response.id"] == task_id
        assert 1 <= a["wavespeed.task.polls"] <= record.polls  # faulted polls got no answer
        if record.status == "completed":
            assert span.status.status_code is StatusCode.UNSET
            assert record.finished_at is not None and record.started_at is not None
            ran = record.finished_at - record.started_at
            assert a["wavespeed.task.inference_time"] == pytest.approx(ran, abs=0.01)
            assert a["wavespeed.task.queue_time"] >= 0
        else:
            assert span.status.status_code is StatusCode.ERROR
            assert a["error.type"] == "TaskFailedError"
            assert a["wavespeed.task.error_code"] == record.code == 1200
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.name == f"generate_content {DEV}"
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id  # the caller's trace
        assert span.context is not None
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
    unknown = [s for s in spans if attrs(s)["wavespeed.task.outcome"] == "unknown"]
    assert len(unknown) == len(run.unknown)
    events = [e for s in spans for e in s.events]
    retries = [e for e in events if e.name == "wavespeed.retry"]
    assert any(attrs(e)["wavespeed.retry.cause"] == "rate_limit" for e in retries)
    assert any(e.name == "wavespeed.cooldown" for e in events)

    # Metrics.
    assert telemetry.total(
        "wavespeed.client.started.tasks", **{"gen_ai.request.model": DEV}
    ) == len(created)
    assert telemetry.total("wavespeed.client.ended.tasks") == 20
    assert telemetry.total(
        "wavespeed.client.ended.tasks", **{"wavespeed.task.outcome": "completed"}
    ) == sum(r.ok for r in results)
    assert telemetry.total("wavespeed.client.active_tasks") == 0
    assert telemetry.total("wavespeed.client.retries") == len(retries)
    assert (
        telemetry.total("wavespeed.client.rate_limits")
        == sum(1 for e in retries if attrs(e).get("http.response.status_code") == 429)
        >= 2
    )
    durations = telemetry.metrics()["wavespeed.client.task.duration"]
    assert sum(p.count for p in durations) == len(created)
    spend = telemetry.total("wavespeed.client.spend")
    assert Decimal(str(round(spend, 6))) == sum(stats.tasks[t].price for t in created)


async def test_a_single_run_continues_the_callers_trace(
    emulator: Emulator, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("the app")
    async with make_client(emulator) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with tracer.start_as_current_span("GET /generate") as request_span:
            pred = await client.run(DEV, {"prompt": "one [latency:80]"})
    (span,) = [s for s in telemetry.finished() if s.name.startswith("generate_content")]
    assert span.parent is not None
    assert span.parent.span_id == request_span.get_span_context().span_id
    assert attrs(span)["wavespeed.task.id"] == pred.id
    assert attrs(span)["server.address"] == "127.0.0.1"
    assert span.events[0].name == "wavespeed.created"
    assert "wavespeed.status" in [e.name for e in span.events]  # seen processing


async def test_uninstrument_ends_open_spans_and_stops_listening(
    emulator: Emulator, telemetry: Telemetry
) -> None:
    async with make_client(emulator) as client:
        inst = instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            max_open_spans=2,
        )
        ids = [(await client.submit(DEV, {"prompt": f"kept {i}"})).id for i in range(3)]
        assert inst.open_spans == 2  # the oldest was pushed out
        inst.uninstrument()
        assert inst.open_spans == 0
        await client.run(DEV, {"prompt": "not traced"})
    spans = telemetry.finished()
    assert len(spans) == 3
    assert {attrs(s)["wavespeed.task.outcome"] for s in spans} == {"not_followed"}
    assert {attrs(s)["wavespeed.task.id"] for s in spans} == set(ids)
    assert telemetry.total("wavespeed.client.active_tasks") == 0


async def test_a_price_callable_and_bad_arguments(emulator: Emulator, telemetry: Telemetry) -> None:
    seen: list[CreatedEvent] = []

    def price(event: CreatedEvent) -> Decimal | None:
        seen.append(event)
        return Decimal("0.5") if event.model == DEV else None

    async with make_client(emulator) as client:
        with pytest.raises(ValidationError, match="max_open_spans"):
            instrument(client, max_open_spans=0)
        with pytest.raises(ValidationError, match="price"):
            instrument(client, price=42)  # type: ignore[arg-type]
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            price=price,
        )
        await client.run(DEV, {"prompt": "paid"})
        await client.run("wavespeed-ai/flux-kontext-pro/text-to-image", {"prompt": "unpriced"})
    assert len(seen) == 2
    assert telemetry.total("wavespeed.client.spend") == 0.5


@pytest.mark.e2e
def test_the_module_without_opentelemetry_names_the_pip_command() -> None:
    import subprocess
    import sys

    from wavespeed_async._core.install import install_command

    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import wavespeed_async.otel\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "needs the OpenTelemetry API" in out and install_command("otel") in out
