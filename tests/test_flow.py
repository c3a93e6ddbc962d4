"""Flow-control primitives: pure, driven by explicit times, no sleeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavespeed_async import ValidationError
from wavespeed_async._core.limiters import Cooldown, SlidingWindow, TokenBucket
from wavespeed_async._core.settings import FlowLimits


def test_sliding_window_allows_limit_then_waits_for_the_oldest_to_expire() -> None:
    w = SlidingWindow(3, window_s=60.0)
    for t in (0.0, 1.0, 2.0):
        assert w.delay(t) == 0.0
        w.record(t)
    assert w.delay(10.0) == pytest.approx(50.0)  # the event at 0 leaves the window at 60
    assert w.delay(60.0) == 0.0


@given(st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=200))
def test_sliding_window_never_admits_more_than_limit_in_any_window(arrivals: list[float]) -> None:
    # As FlowControl uses it: on a monotonic clock, each arrival waits the delay it is
    # told, then is recorded.
    limit, window = 5, 60.0
    w = SlidingWindow(limit, window)
    admitted: list[float] = []
    now = 0.0
    for t in sorted(arrivals):
        now = max(now, t)
        d = w.delay(now)
        assert d >= 0
        now += d
        assert w.delay(now) == 0.0  # waiting exactly the delay is enough
        w.record(now)
        admitted.append(now)
    for i, t in enumerate(admitted):
        in_window = [u for u in admitted[i:] if u < t + window]
        assert len(in_window) <= limit


def test_token_bucket_spaces_a_burst_by_the_rate() -> None:
    b = TokenBucket(rate=10.0, capacity=1.0)
    delays = [b.take(0.0) for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


@given(st.floats(min_value=0.5, max_value=1000), st.integers(min_value=1, max_value=300))
def test_token_bucket_long_run_rate_never_exceeds_rate(rate: float, n: int) -> None:
    b = TokenBucket(rate=rate, capacity=1.0)
    last_release = max(b.take(0.0) for _ in range(n))
    # n tokens taken at once are released over (n - capacity) / rate seconds, no faster.
    assert last_release >= (n - 1) / rate - 1e-9


def test_token_bucket_refills_while_idle() -> None:
    b = TokenBucket(rate=2.0, capacity=2.0)
    assert b.take(0.0) == 0.0
    assert b.take(0.0) == 0.0
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(10.0) == 0.0  # refilled (capped at capacity)


def test_cooldown_extends_but_never_shortens() -> None:
    c = Cooldown()
    assert c.delay(0.0) == 0.0
    c.extend(0.0, 5.0)
    c.extend(1.0, 1.0)  # a shorter hint later must not cut the first one
    assert c.delay(1.0) == pytest.approx(4.0)
    assert c.delay(6.0) == 0.0
    assert math.isinf(Cooldown().until)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("max_in_flight", {"max_in_flight": 0}),
        ("max_tasks_per_minute", {"max_tasks_per_minute": -1}),
        ("max_polls_per_s", {"max_polls_per_s": 0.0}),
        ("max_connections", {"max_connections": 0}),
    ],
)
def test_flow_limits_reject_out_of_range_values_naming_the_field(
    field: str, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as info:
        FlowLimits(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
