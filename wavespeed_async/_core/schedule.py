"""Adaptive polling: learn how long a model's tasks take, and poll when it pays.

A fixed 1 s poll sees a result about 500 ms after it is ready; a fixed 0.1 s poll sees it
in about 50 ms but costs ten times the requests. :class:`DurationEstimator` learns each
model's distribution of durations from what polling observed, and :func:`next_poll_delay`
waits until the distribution's low quantile before the first poll, spaces later polls by
the hazard rate (the chance of finishing now, given not finished yet) inside the bulk of
the distribution, and backs off geometrically in its tail. Everything is pure: no clock,
no sleeping (``benchmarks/simulate.py`` replays a schedule over a list of durations).
"""

from __future__ import annotations

import bisect
import math
from bisect import bisect_right as _bisect_right
from math import sqrt as _sqrt
from statistics import NormalDist
from typing import Final

from wavespeed_async._core.settings import PollConfig

__all__ = ["DurationEstimator", "next_poll_delay"]

_STD_NORMAL: Final = NormalDist()
#: Below this many observations the estimator keeps the prior's spread.
_MIN_SAMPLES: Final = 5
#: Probability mass over which the local density of durations is measured.
_DENSITY_BANDWIDTH: Final = 0.1
_HALF_BAND: Final = _DENSITY_BANDWIDTH / 2
#: A task found done at its first poll finished at some unknown time before it: record it
#: this much earlier, so that if the durations shrink, the first poll moves earlier too.
_FIRST_HIT_SHRINK: Final = 0.8
#: The most durations one estimator keeps when it grows its window to the tasks in flight.
MAX_WINDOW: Final = 16_384


class DurationEstimator:
    """Learns one model's distribution of submit-to-terminal durations, in seconds.

    Keeps the last ``window`` durations in a ring buffer and a sorted copy updated on
    every observation (one bisect and one insertion: O(window) memory moves, microseconds
    even at the largest window); queries are O(1) or O(log window). With fewer
    than 5 observations it answers from a log-normal prior centred on ``prior_s`` (or, once
    anything was observed, on the geometric mean of the observations) with log-space
    spread ``prior_spread``.

    Durations arrive in the order tasks end, which is a fair sample of the distribution
    only when tasks start at a steady rate. Tasks started together end in waves: their
    last ``window`` durations are the longest of the wave, and a schedule learned from
    them polls the next wave late. :meth:`grow_window` (the poll scheduler calls it with
    the number of tasks in flight) keeps at least as many durations as tasks run at once,
    so the window spans a whole wave.

    Feed it either exact durations (:meth:`observe`: a webhook's arrival, a sync-mode
    answer) or what polling saw (:meth:`observe_detection`). Not thread-safe: use it from
    one event loop.
    """

    __slots__ = (
        "_buf",
        "_log_sum",
        "_next",
        "_points",
        "_prior_s",
        "_quantiles",
        "_sorted",
        "_spread",
        "_window",
    )

    def __init__(self, prior_s: float, *, window: int = 256, prior_spread: float = 0.4) -> None:
        """Create an estimator.

        Args:
            prior_s: The median duration (seconds) to assume before anything is observed.
            window: How many recent durations to keep (memory is bounded by this).
            prior_spread: Log-space standard deviation of the prior.

        Raises:
            ValueError: A non-positive or non-finite argument.
        """
        if not (math.isfinite(prior_s) and prior_s > 0):
            raise ValueError(f"prior_s must be a positive number of seconds, got {prior_s!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        if not (math.isfinite(prior_spread) and prior_spread > 0):
            raise ValueError(f"prior_spread must be positive, got {prior_spread!r}")
        self._prior_s = float(prior_s)
        self._spread = float(prior_spread)
        self._window = window
        self._buf: list[float] = []
        self._next = 0  # where the next observation goes once the buffer is full
        self._sorted: list[float] = []
        #: Answers of :meth:`quantile` since the last change (the schedule asks the same
        #: few quantiles at every poll).
        self._quantiles: dict[float, float] = {}
        #: The schedule's first-poll and tail points for one PollConfig, since the last
        #: change (see :func:`next_poll_delay`).
        self._points: tuple[PollConfig, float, float] | None = None
        self._log_sum = 0.0  # only used while fewer than _MIN_SAMPLES were observed

    @classmethod
    def from_config(cls, config: PollConfig) -> DurationEstimator:
        """An estimator with the prior and window of ``config``."""
        return cls(
            config.expected_duration_s,
            window=config.tuning.estimator_window,
            prior_spread=config.tuning.prior_spread,
        )

    @property
    def count(self) -> int:
        """How many durations are held (at most ``window``)."""
        return len(self._buf)

    @property
    def window(self) -> int:
        """The most durations ever held."""
        return self._window

    def grow_window(self, size: int) -> None:
        """Keep at least ``size`` durations from now on (at most :data:`MAX_WINDOW`).

        The window never shrinks; the durations already held are kept.
        """
        size = min(size, MAX_WINDOW)
        if size <= self._window:
            return
        if self._next:
            # Unroll the ring: oldest first, so that new durations are appended after it.
            self._buf = self._buf[self._next :] + self._buf[: self._next]
            self._next = 0
        self._window = size

    def observe(self, duration_s: float) -> None:
        """Record one task's submit-to-terminal duration in seconds.

        Negative values are recorded as 0; NaN and infinities are ignored.
        """
        if not math.isfinite(duration_s):
            return
        value = max(0.0, float(duration_s))
        ordered = self._sorted
        if len(self._buf) < self._window:
            self._buf.append(value)
            if len(self._buf) <= _MIN_SAMPLES:
                self._log_sum += math.log(max(value, 1e-3))
        else:
            old = self._buf[self._next]
            del ordered[bisect.bisect_left(ordered, old)]
            self._buf[self._next] = value
            self._next = (self._next + 1) % self._window
        bisect.insort(ordered, value)
        self._quantiles.clear()
        self._points = None

    def observe_detection(self, detected_at_s: float, last_pending_at_s: float | None) -> None:
        """Record a task whose end was seen by polling.

        The task ended somewhere between the last poll that saw it running and the poll
        that saw it done; the midpoint of that bracket is recorded. A task already done
        at its first poll (``last_pending_at_s=None``) is recorded a little earlier than
        ``detected_at_s``: otherwise a first poll placed too late could never learn that
        tasks became faster.

        Args:
            detected_at_s: Seconds from submit to the poll that saw a terminal status.
            last_pending_at_s: Seconds from submit to the previous poll (not terminal),
                or ``None`` when the terminal status was seen at the first poll.
        """
        if last_pending_at_s is None:
            self.observe(detected_at_s * _FIRST_HIT_SHRINK)
        else:
            self.observe((min(last_pending_at_s, detected_at_s) + detected_at_s) / 2.0)

    def _prior_median(self) -> float:
        n = len(self._buf)
        return math.exp(self._log_sum / n) if n else self._prior_s

    def quantile(self, q: float) -> float:
        """The duration (seconds) by which a fraction ``q`` of tasks have finished.

        Linear interpolation between order statistics of the recent durations; the prior
        (see the class docstring) while fewer than 5 were observed. Non-decreasing in
        ``q``; ``q`` is clamped into [0, 1].
        """
        known = self._quantiles.get(q)
        if known is not None:
            return known
        value = self._quantile(q)
        if len(self._quantiles) < 64:
            self._quantiles[q] = value
        return value

    def _schedule_points(self, config: PollConfig) -> tuple[PollConfig, float, float]:
        """``(config, first-poll time, tail time)``, kept until the next observation.

        The times are the quantiles ``config``'s schedule starts polling and starts backing
        off at.
        """
        points = (
            config,
            self.quantile(config.tuning.first_poll_fraction),
            self.quantile(config.tuning.tail_quantile),
        )
        self._points = points
        return points

    def _quantile(self, q: float) -> float:
        q = min(1.0, max(0.0, q)) if math.isfinite(q) else 0.5
        xs = self._sorted
        n = len(xs)
        if n < _MIN_SAMPLES:
            # The log-normal's 0 and 1 quantiles are 0 and infinity: stay inside.
            z = _STD_NORMAL.inv_cdf(min(0.9999, max(0.0001, q)))
            return self._prior_median() * math.exp(self._spread * z)
        pos = q * (n - 1)
        i = min(int(pos), n - 2)
        return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)

    def cdf(self, duration_s: float) -> float:
        """The fraction of tasks (0..1) that finish within ``duration_s`` seconds.

        The inverse of :meth:`quantile`: non-decreasing, 0 below the shortest duration
        held, 1 above the longest.
        """
        xs = self._sorted
        n = len(xs)
        if n < _MIN_SAMPLES:
            if duration_s <= 0:
                return 0.0
            z = (math.log(duration_s) - math.log(self._prior_median())) / self._spread
            return min(0.9999, max(0.0001, _STD_NORMAL.cdf(z)))
        if duration_s <= xs[0]:
            return 0.0
        if duration_s >= xs[-1]:
            return 1.0
        i = bisect.bisect_right(xs, duration_s) - 1  # xs[i] <= duration_s < xs[i + 1]
        return (i + (duration_s - xs[i]) / (xs[i + 1] - xs[i])) / (n - 1)

    def __repr__(self) -> str:
        if not hasattr(self, "_sorted"):  # __init__ raised or was never run
            return "DurationEstimator(<not initialised>)"
        return (
            f"DurationEstimator(count={self.count}, p5={self.quantile(0.05):.3f}s, "
            f"p50={self.quantile(0.5):.3f}s, p95={self.quantile(0.95):.3f}s)"
        )


# --------------------------------------------------------------------------- polling


def _interval_at(t: float, xs: list[float], last: int, two_c: float, band: float) -> float:
    """The poll interval that minimises ``poll_cost_s * polls + latency`` locally.

    With polls at density rho(t) per second, a task costs ``integral of rho`` polls up to
    its end and ``1 / (2 rho)`` latency on average at its end; minimising the sum over the
    distribution gives ``rho = sqrt(hazard / (2 poll_cost_s))``, where ``hazard = f / S``
    is the density of finishing now given not finished yet. The density ``f`` is measured
    over ``_DENSITY_BANDWIDTH`` of probability mass around ``t``.

    ``xs`` are the estimator's sorted durations (at least ``_MIN_SAMPLES``), ``last`` is
    ``len(xs) - 1``, ``two_c`` is ``2 * poll_cost_s`` and ``band`` is
    ``_DENSITY_BANDWIDTH * last``. Runs at every poll of every task, so the cdf and the
    two quantiles are computed inline, in index units: position ``p`` in ``xs`` stands
    for the probability ``p / last`` (the interpolation of :meth:`DurationEstimator.cdf`
    and :meth:`DurationEstimator.quantile`).
    """
    if t >= xs[last]:
        return 0.0  # past everything seen: poll as fast as allowed
    if t <= xs[0]:
        p = 0.0
    else:
        i = _bisect_right(xs, t) - 1  # xs[i] <= t < xs[i + 1]
        x = xs[i]
        p = i + (t - x) / (xs[i + 1] - x)
    # The band of probability around p, moved inside [0, last] at either end.
    lo = p - 0.5 * band
    if lo <= 0.0:
        lo = 0.0
        hi = band
    else:
        hi = lo + band
        if hi >= last:
            hi = last
            lo = last - band
    # The durations at hi and lo (quantile interpolation; hi < last + 1, lo < last).
    i = int(hi)
    if i == last:
        i -= 1
    x = xs[i]
    span_s = x + (xs[i + 1] - x) * (hi - i)
    i = int(lo)
    x = xs[i]
    span_s -= x + (xs[i + 1] - x) * (lo - i)
    if span_s <= 0.0:
        return 0.0  # a point mass here: poll as fast as allowed
    # interval = sqrt(2 c / hazard), hazard = (band / last / span_s) / (1 - p / last)
    return _sqrt(two_c * (last - p) * span_s / band)


def _prior_interval(t: float, estimator: DurationEstimator, poll_cost_s: float) -> float:
    """:func:`_interval_at` while the estimator answers from its prior (few durations)."""
    u = estimator.cdf(t)
    lo = max(0.0, u - _HALF_BAND)
    hi = min(1.0, lo + _DENSITY_BANDWIDTH)
    lo = max(0.0, hi - _DENSITY_BANDWIDTH)
    span_s = estimator.quantile(hi) - estimator.quantile(lo)
    survival = 1.0 - u
    if span_s <= 0.0 or survival <= 0.0:
        return 0.0
    return math.sqrt(2.0 * poll_cost_s * survival * span_s / (hi - lo))


def next_poll_delay(
    elapsed_s: float,
    polls_done: int,
    status: str,
    estimator: DurationEstimator,
    config: PollConfig,
) -> float:
    """How long to wait before the next poll of a task submitted ``elapsed_s`` ago.

    The schedule has three phases over the model's learned durations:

    1. Before the ``first_poll_fraction`` quantile (the first plausible completion) it
       waits until that point in one step. This wait may exceed ``max_interval_s``: for a
       model whose tasks take a minute, polling every few seconds before then would only
       ever see "not done". It is never shorter than ``min_interval_s``.
    2. Inside the bulk, the interval is ``sqrt(2 * poll_cost_s / hazard)``, the spacing
       that minimises ``polls * poll_cost_s + detection latency`` on average: dense where
       tasks are likely to finish given that this one has not, sparse elsewhere. It is
       evaluated half an interval ahead too and the shorter is kept, so that a step never
       jumps across a rise in the hazard.
    3. Past the ``tail_quantile`` (a late task), the interval is ``tail_interval_fraction``
       of the elapsed time: polls grow geometrically and detection stays within ~10% of
       the task's own time.

    A poll after the first that still says ``created`` means the task is queued and has
    not started: the next wait is at least ``created_wait_fraction`` of the first-poll
    time. Phases 2 and 3 are clamped to ``[min_interval_s, max_interval_s]``.

    Args:
        elapsed_s: Seconds since the submit was sent (the same origin as the durations
            fed to the estimator).
        polls_done: Polls of this task so far (0 before the first).
        status: The task's last known status (the submit's answer before any poll).
        estimator: The model's learned durations.
        config: Bounds and tuning.

    Returns:
        Seconds to wait, at least ``min_interval_s``. Deterministic for the same inputs
        and estimator contents. The poll scheduler calls this at every poll, with its
        arguments by position.
    """
    t = elapsed_s if 0.0 < elapsed_s < math.inf else 0.0  # NaN, negative, inf: 0
    points = estimator._points
    if points is None or points[0] is not config:
        points = estimator._schedule_points(config)
    lo = config.min_interval_s
    first_s = points[1]
    if first_s - t >= lo:
        return first_s - t
    if t >= points[2]:
        delay = config.tuning.tail_interval_fraction * t
    else:
        xs = estimator._sorted
        if len(xs) < _MIN_SAMPLES:
            delay = _prior_interval(t, estimator, config.poll_cost_s)
            ahead = _prior_interval(t + delay / 2, estimator, config.poll_cost_s)
        else:
            last = len(xs) - 1
            two_c = 2.0 * config.poll_cost_s
            band = _DENSITY_BANDWIDTH * last
            delay = _interval_at(t, xs, last, two_c, band)
            ahead = _interval_at(t + delay / 2, xs, last, two_c, band)
        if ahead < delay:
            delay = ahead
    if polls_done > 0 and status == "created":
        delay = max(delay, config.tuning.created_wait_fraction * first_s)
    if delay < lo:
        return lo
    hi = config.max_interval_s
    return hi if delay > hi else delay
