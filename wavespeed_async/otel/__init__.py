"""OpenTelemetry for a Client: a span per task and the client's metrics.

The ``otel`` extra (``opentelemetry-api`` only: the SDK, its exporters and their settings
are the application's), then::

    from wavespeed_async.otel import instrument

    instrument(client)                      # the global tracer and meter providers
    instrument(client, tracer_provider=tp, meter_provider=mp)

Each task gets one span (kind CLIENT) from its submit to its end, a child of the span that
was current where the submit (or the wait) was called: a FastAPI request's trace continues
into its tasks. Retries, cool-downs, statuses and deliveries are span events. The metrics
count tasks started and ended (by outcome and status), tasks in flight, 429 answers and
retries (by cause), and record how long tasks took and how late their end was seen, and
what they cost when prices are given. Names and attributes: ``docs/observability.md``.
"""

from __future__ import annotations

from wavespeed_async._core.install import install_command

try:
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401 - only checks that the extra is installed
except ImportError as _exc:
    raise ModuleNotFoundError(
        f"wavespeed_async.otel needs the OpenTelemetry API ({_exc}); install it with: "
        f"{install_command('otel')}",
        name=_exc.name,
    ) from _exc

from wavespeed_async.otel._instrument import (
    METER_NAME,
    TRACER_NAME,
    Instrumentation,
    PriceOf,
    instrument,
)

__all__ = ["METER_NAME", "TRACER_NAME", "Instrumentation", "PriceOf", "instrument"]
