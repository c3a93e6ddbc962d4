"""``FlowLimits.split``: n equal shares that together stay within the original limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavespeed_async import FlowLimits, ValidationError


def test_split_divides_every_limit() -> None:
    limits = FlowLimits(
        max_in_flight=256, max_tasks_per_minute=500, max_polls_per_s=500.0, max_connections=100
    )
    share = limits.split(8)
    assert share == FlowLimits(
        max_in_flight=32, max_tasks_per_minute=62, max_polls_per_s=62.5, max_connections=12
    )


def test_split_keeps_no_limit_as_no_limit_and_one_as_itself() -> None:
    limits = FlowLimits(max_in_flight=None, max_tasks_per_minute=None, max_polls_per_s=None)
    assert limits.split(4) == FlowLimits(
        max_in_flight=None, max_tasks_per_minute=None, max_polls_per_s=None, max_connections=25
    )
    assert FlowLimits().split(1) == FlowLimits()


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_split_rejects_a_bad_count_naming_it(n: object) -> None:
    with pytest.raises(ValidationError, match=r"n: .* allowed: an integer >= 1") as info:
        FlowLimits().split(n)  # type: ignore[arg-type]
    assert info.value.field == "n"


@given(
    cap=st.integers(1, 10_000),
    rate=st.integers(1, 10_000),
    polls=st.floats(0.01, 10_000.0),
    n=st.integers(1, 64),
)
def test_shares_never_sum_above_the_limits_when_each_limit_allows_n(
    cap: int, rate: int, polls: float, n: int
) -> None:
    limits = FlowLimits(max_in_flight=cap, max_tasks_per_minute=rate, max_polls_per_s=polls)
    share = limits.split(n)
    assert share.max_in_flight is not None and share.max_tasks_per_minute is not None
    assert share.max_polls_per_s is not None
    if cap >= n:
        assert n * share.max_in_flight <= cap
    if rate >= n:
        assert n * share.max_tasks_per_minute <= rate
    assert n * share.max_polls_per_s <= polls * (1 + 1e-9)
    assert share.max_in_flight >= 1 and share.max_tasks_per_minute >= 1
