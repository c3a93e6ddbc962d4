"""Replays of poll schedules over task durations: what a schedule costs and achieves.

Pure (no network, no clock): the tests and the benchmark report use it to compare the
adaptive schedule with fixed intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wavespeed_async._core.schedule import DurationEstimator, next_poll_delay
from wavespeed_async._core.settings import PollConfig

__all__ = ["PollSimulation", "simulate_fixed_polling", "simulate_polling"]


@dataclass(frozen=True, slots=True)
class PollSimulation:
    """What a polling schedule costs and achieves over a set of task durations.

    Attributes:
        mean_polls: Polls per task, on average (the poll that sees "done" included).
        p50_detection_s: Median detection latency: seconds from a task's end to the poll
            that saw it.
        p95_detection_s: 95th percentile detection latency.
        mean_detection_s: Mean detection latency.
        tasks: How many tasks the figures cover (warm-up excluded).
    """

    mean_polls: float
    p50_detection_s: float
    p95_detection_s: float
    mean_detection_s: float = 0.0
    tasks: int = 0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    pos = q * (n - 1)
    i = min(int(pos), n - 2)
    return sorted_values[i] + (sorted_values[i + 1] - sorted_values[i]) * (pos - i)


def _summarise(polls: Sequence[int], latencies: Sequence[float]) -> PollSimulation:
    ordered = sorted(latencies)
    return PollSimulation(
        mean_polls=sum(polls) / len(polls),
        p50_detection_s=_percentile(ordered, 0.5),
        p95_detection_s=_percentile(ordered, 0.95),
        mean_detection_s=sum(ordered) / len(ordered),
        tasks=len(ordered),
    )


def simulate_polling(
    durations: Sequence[float],
    config: PollConfig | None = None,
    *,
    warmup: int = 32,
    estimator: DurationEstimator | None = None,
) -> PollSimulation:
    """Replay :func:`next_poll_delay` over tasks of known durations, with no clock.

    Tasks run one after another; each is polled (status ``processing``) until a poll at
    or after its duration, and the estimator then learns from what the poll saw
    (:meth:`DurationEstimator.observe_detection`), exactly as a real client would.

    Args:
        durations: True submit-to-done times in seconds, in arrival order.
        config: The poll settings (default ``PollConfig()``).
        warmup: How many leading tasks are polled and learned from but left out of the
            figures (a client that has run a while, not a cold start).
        estimator: Start from this estimator (it is updated); default a fresh one from
            ``config``.

    Returns:
        Polls per task and detection latencies over the tasks after the warm-up.

    Raises:
        ValueError: No durations left after the warm-up, or a negative/non-finite one.
    """
    config = config or PollConfig()
    if len(durations) <= warmup:
        raise ValueError(f"need more than warmup={warmup} durations, got {len(durations)}")
    est = estimator if estimator is not None else DurationEstimator.from_config(config)
    polls: list[int] = []
    latencies: list[float] = []
    for index, duration in enumerate(durations):
        if not (math.isfinite(duration) and duration >= 0):
            raise ValueError(f"durations[{index}] must be a finite duration >= 0: {duration!r}")
        t, done, last_pending = 0.0, 0, None
        while True:
            t += next_poll_delay(
                elapsed_s=t, polls_done=done, status="processing", estimator=est, config=config
            )
            done += 1
            if t >= duration:
                break
            last_pending = t
        est.observe_detection(t, last_pending)
        if index >= warmup:
            polls.append(done)
            latencies.append(t - duration)
    return _summarise(polls, latencies)


def simulate_fixed_polling(
    durations: Sequence[float], interval_s: float, *, first_delay_s: float | None = None
) -> PollSimulation:
    """The same figures as :func:`simulate_polling` for a fixed-interval poller.

    Args:
        durations: True submit-to-done times in seconds.
        interval_s: The fixed interval (the official SDK uses 1.0).
        first_delay_s: The wait before the first poll (default ``interval_s``).
    """
    if not (interval_s > 0 and durations):
        raise ValueError("need a positive interval and at least one duration")
    first = interval_s if first_delay_s is None else first_delay_s
    polls: list[int] = []
    latencies: list[float] = []
    for duration in durations:
        extra = max(0, math.ceil((duration - first) / interval_s - 1e-9))
        polls.append(1 + extra)
        latencies.append(max(0.0, first + extra * interval_s - duration))
    return _summarise(polls, latencies)
