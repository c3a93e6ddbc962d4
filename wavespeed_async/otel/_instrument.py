"""``instrument(client)``: a listener of the Client's events that makes spans and metrics."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.events import (
    CompletedEvent,
    CooldownEvent,
    CreatedEvent,
    DeliveredEvent,
    EndEvent,
    Event,
    FailedEvent,
    RetryEvent,
    StatusEvent,
    SubmittingEvent,
    TimeoutEvent,
    UnknownEvent,
    WaitingEvent,
)
from wavespeed_async._facade.client import Client
from wavespeed_async._version import __version__

__all__ = ["METER_NAME", "TRACER_NAME", "Instrumentation", "PriceOf", "instrument"]

log = logging.getLogger("wavespeed_async.otel")

#: The instrumentation scope of the spans and of the metrics.
TRACER_NAME: Final = "wavespeed_async"
METER_NAME: Final = "wavespeed_async"
#: Spans kept open at most; past it the oldest ends (``wavespeed.task.outcome`` =
#: ``not_followed``): a task submitted and never waited for by this Client.
DEFAULT_MAX_OPEN_SPANS: Final = 10_000

#: The price of a created task in USD (``None``: unknown), or a table of them by model.
PriceOf = Callable[[CreatedEvent], Decimal | None] | Mapping[str, Decimal]

_OPERATION: Final = "generate_content"
_PROVIDER: Final = "wavespeed"
# Bucket bounds (seconds): generations take seconds to minutes; their ends are seen within
# tens of milliseconds to seconds.
_DURATION_BUCKETS: Final = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800)
_DETECT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10)


def _ns(seconds: float) -> int:
    """Unix seconds as OpenTelemetry's nanoseconds."""
    return int(seconds * 1e9)


class _Open:
    """A task's span, and whether it is counted in flight."""

    __slots__ = ("counted", "model", "span")

    def __init__(self, span: trace.Span, model: str) -> None:
        self.span = span
        self.model = model
        self.counted = False


class Instrumentation:
    """What :func:`instrument` attached to a Client; :meth:`uninstrument` detaches it.

    Attributes:
        open_spans: Spans of tasks not ended yet.
    """

    def __init__(
        self,
        client: Client,
        *,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        price: PriceOf | None,
        max_open_spans: int,
    ) -> None:
        self._tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
        self._started = meter.create_counter(
            "wavespeed.client.started.tasks",
            unit="{task}",
            description="Tasks created by this client (a wait of an id from elsewhere not counted)",
        )
        self._ended = meter.create_counter(
            "wavespeed.client.ended.tasks",
            unit="{task}",
            description="Follows of tasks that ended, by outcome and final status",
        )
        self._active = meter.create_up_down_counter(
            "wavespeed.client.active_tasks",
            unit="{task}",
            description="Tasks this client follows that have not ended",
        )
        self._rate_limited = meter.create_counter(
            "wavespeed.client.rate_limits",
            unit="{response}",
            description="429 answers (each starts or joins the client's cool-down)",
        )
        self._retries = meter.create_counter(
            "wavespeed.client.retries",
            unit="{retry}",
            description="Requests sent again, by cause",
        )
        self._cooldowns = meter.create_counter(
            "wavespeed.client.cooldowns",
            unit="{cooldown}",
            description="Pauses of every request after a 429 (started here or by another process)",
        )
        self._duration = meter.create_histogram(
            "wavespeed.client.task.duration",
            unit="s",
            description="From a task's creation to its end, as this client saw it",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._detection = meter.create_histogram(
            "wavespeed.client.task.detection_latency",
            unit="s",
            description=(
                "How late a task's end was seen, at most: from the last poll that saw it "
                "running to the poll that saw it ended (tasks ended by a poll)"
            ),
            explicit_bucket_boundaries_advisory=list(_DETECT_BUCKETS),
        )
        self._spend = meter.create_counter(
            "wavespeed.client.spend",
            unit="{USD}",
            description="What created tasks were charged, in USD, where the price is known",
        )
        self._price = _price_of(price)
        self._max_open = max_open_spans
        self._open: collections.OrderedDict[int, _Open] = collections.OrderedDict()
        parts = urlsplit(client.base_url)
        self._server: dict[str, AttributeValue] = {"server.address": parts.hostname or ""}
        if parts.port is not None:
            self._server["server.port"] = parts.port
        self._remove: Callable[[], None] | None = client.add_event_listener(self)

    @property
    def open_spans(self) -> int:
        return len(self._open)

    def uninstrument(self) -> None:
        """Stop listening; spans still open end (``wavespeed.task.outcome=not_followed``)."""
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()
        while self._open:
            self._drop_oldest()

    # -- the listener ---------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, SubmittingEvent):
            self._start(event, event.model)
        elif isinstance(event, WaitingEvent):
            self._start(event, event.model, waiting=True)
        elif isinstance(event, CreatedEvent):
            self._created(event)
        elif isinstance(event, RetryEvent):
            self._retry(event)
        elif isinstance(event, CooldownEvent):
            self._cooldown(event)
        elif isinstance(event, StatusEvent):
            status: dict[str, AttributeValue] = {"wavespeed.task.status": event.status}
            self._span_event(event, "wavespeed.status", status)
        elif isinstance(event, DeliveredEvent):
            attrs: dict[str, AttributeValue] = {
                "wavespeed.task.status": event.status,
                "wavespeed.delivery.remote": event.remote,
            }
            self._span_event(event, "wavespeed.delivered", attrs)
        elif isinstance(event, EndEvent):
            self._end(event)

    def _start(self, event: Event, model: str, *, waiting: bool = False) -> None:
        if event.ref is None:
            return
        attrs: dict[str, AttributeValue] = {
            "gen_ai.operation.name": _OPERATION,
            "gen_ai.provider.name": _PROVIDER,
            **self._server,
        }
        if model:
            attrs["gen_ai.request.model"] = model
        if event.index is not None:
            attrs["wavespeed.job.index"] = event.index
        if event.task_id is not None:
            attrs["wavespeed.task.id"] = event.task_id
            attrs["gen_ai.response.id"] = event.task_id
        if waiting:
            attrs["wavespeed.task.followed"] = "wait"
        # Called in the caller's own step: the current span there is the parent.
        span = self._tracer.start_span(
            f"{_OPERATION} {model}" if model else _OPERATION,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=_ns(event.time),
        )
        opened = self._open[event.ref] = _Open(span, model)
        if waiting:
            opened.counted = True
            self._active.add(1, self._model_attrs(model))
        if len(self._open) > self._max_open:
            self._drop_oldest()

    def _created(self, event: CreatedEvent) -> None:
        attrs = self._model_attrs(event.model)
        self._started.add(1, attrs)
        price = self._price(event)
        if price is not None:
            self._spend.add(float(price), attrs)
        opened = self._open.get(event.ref) if event.ref is not None else None
        if opened is None:
            return
        opened.counted = True
        self._active.add(1, attrs)
        span = opened.span
        if event.task_id is not None:
            span.set_attribute("wavespeed.task.id", event.task_id)
            span.set_attribute("gen_ai.response.id", event.task_id)
        span.add_event(
            "wavespeed.created", {"wavespeed.task.status": event.status}, _ns(event.time)
        )

    def _retry(self, event: RetryEvent) -> None:
        attrs: dict[str, AttributeValue] = {
            "wavespeed.retry.cause": event.cause,
            "wavespeed.request": event.request,
        }
        self._retries.add(1, attrs)
        if event.http_status == 429:
            self._rate_limited.add(1, {"wavespeed.request": event.request})
        span_attrs: dict[str, AttributeValue] = {
            **attrs,
            "wavespeed.retry.attempt": event.attempt,
            "wavespeed.retry.delay": event.delay_s,
        }
        if event.http_status is not None:
            span_attrs["http.response.status_code"] = event.http_status
        self._span_event(event, "wavespeed.retry", span_attrs)

    def _cooldown(self, event: CooldownEvent) -> None:
        self._cooldowns.add(1, {"wavespeed.cooldown.remote": event.remote})
        attrs: dict[str, AttributeValue] = {
            "wavespeed.cooldown.duration": event.seconds,
            "wavespeed.cooldown.remote": event.remote,
        }
        self._span_event(event, "wavespeed.cooldown", attrs)

    def _span_event(self, event: Event, name: str, attrs: Mapping[str, AttributeValue]) -> None:
        opened = self._open.get(event.ref) if event.ref is not None else None
        if opened is not None:
            opened.span.add_event(name, attrs, _ns(event.time))

    def _end(self, event: EndEvent) -> None:
        opened = self._open.pop(event.ref, None) if event.ref is not None else None
        model = event.model or (opened.model if opened is not None else "")
        attrs = self._model_attrs(model)
        ended: dict[str, AttributeValue] = {**attrs, "wavespeed.task.outcome": event.kind}
        if event.status is not None:
            ended["wavespeed.task.status"] = event.status
        error = _error_type(event)
        if error is not None:
            ended["error.type"] = error
        self._ended.add(1, ended)
        if event.duration_s is not None and isinstance(event, (CompletedEvent, FailedEvent)):
            self._duration.record(event.duration_s, ended)
        detect = getattr(event, "detect_s", None)
        if detect is not None:
            self._detection.record(detect, attrs)
        if opened is None:
            return
        if opened.counted:
            self._active.add(-1, attrs)
        span = opened.span
        span.set_attributes(_end_attributes(event))
        if error is not None:
            description = getattr(event, "error", "") or event.kind
            span.set_status(StatusCode.ERROR, description[:300])
        span.end(_ns(event.time))

    def _drop_oldest(self) -> None:
        _ref, opened = self._open.popitem(last=False)
        if opened.counted:
            self._active.add(-1, self._model_attrs(opened.model))
        opened.span.set_attribute("wavespeed.task.outcome", "not_followed")
        opened.span.end()

    @staticmethod
    def _model_attrs(model: str) -> dict[str, AttributeValue]:
        return {"gen_ai.request.model": model} if model else {}


def _error_type(event: EndEvent) -> str | None:
    """``error.type`` of an end: the error's class, or the end's kind; ``None`` if ok."""
    if isinstance(event, FailedEvent):
        return event.error_type or "failed"
    if isinstance(event, (UnknownEvent, TimeoutEvent)):
        return event.kind
    return None


def _end_attributes(event: EndEvent) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "wavespeed.task.outcome": event.kind,
        "wavespeed.task.polls": event.polls,
    }
    if event.status is not None:
        attrs["wavespeed.task.status"] = event.status
    if event.task_id is not None:
        attrs["wavespeed.task.id"] = event.task_id
    if event.duration_s is not None:
        attrs["wavespeed.task.duration"] = event.duration_s
    if isinstance(event, CompletedEvent):
        attrs["wavespeed.task.delivered"] = event.delivered
        if event.inference_ms is not None:
            inference = event.inference_ms / 1000
            attrs["wavespeed.task.inference_time"] = inference
            if event.duration_s is not None:
                attrs["wavespeed.task.queue_time"] = max(0.0, event.duration_s - inference)
        if event.detect_s is not None:
            attrs["wavespeed.task.detection_latency"] = event.detect_s
    elif isinstance(event, FailedEvent):
        attrs["error.type"] = event.error_type or "failed"
        if event.code is not None:
            attrs["wavespeed.task.error_code"] = event.code
        if event.http_status is not None:
            attrs["http.response.status_code"] = event.http_status
    elif isinstance(event, UnknownEvent):
        attrs["error.type"] = "unknown"
        attrs["wavespeed.submit.cause"] = event.cause
    elif isinstance(event, TimeoutEvent):
        attrs["error.type"] = "timeout"
    return attrs


def _price_of(price: PriceOf | None) -> Callable[[CreatedEvent], Decimal | None]:
    if price is None:
        return lambda event: None
    if isinstance(price, Mapping):
        table = {str(k): Decimal(str(v)) for k, v in price.items()}
        return lambda event: table.get(event.model)
    if callable(price):
        return price
    raise ValidationError(
        "price",
        f"price: {type(price).__name__}; allowed: a mapping of model to USD, a callable, or None",
    )


def instrument(
    client: Client,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    price: PriceOf | None = None,
    max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
) -> Instrumentation:
    """Trace every task of ``client`` and record its metrics with OpenTelemetry.

    Args:
        client: The Client (instrument it once).
        tracer_provider, meter_provider: Default: the global ones
            (``opentelemetry.trace.set_tracer_provider`` ...).
        price: The USD price of a created task, for the spend counter: a mapping of model
            to price, or a callable given the :class:`CreatedEvent` that returns the price
            or ``None`` (unknown: not counted).
        max_open_spans: Open spans kept at most (a task submitted and not waited for by
            this Client keeps its span open); past it, the oldest ends.

    Returns:
        An :class:`Instrumentation`; ``.uninstrument()`` detaches it.

    Raises:
        ValidationError: ``price`` or ``max_open_spans`` is not allowed.
    """
    if not isinstance(max_open_spans, int) or max_open_spans < 1:
        raise ValidationError(
            "max_open_spans", f"max_open_spans: {max_open_spans!r}; allowed: an integer >= 1"
        )
    return Instrumentation(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        price=price,
        max_open_spans=max_open_spans,
    )
