"""The config objects: documented defaults, immutability, and field checks at construction."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.settings import (
    TIERS,
    TIERS_ALTERNATE,
    PollConfig,
    RetryConfig,
    ScheduleTuning,
    TierLimits,
    Timeouts,
)


def test_defaults_are_the_documented_values() -> None:
    assert Timeouts() == Timeouts(
        connect_s=10.0, request_s=60.0, sync_request_s=120.0, task_s=1800.0
    )
    assert RetryConfig() == RetryConfig(
        max_attempts=6,
        max_submit_attempts=6,
        backoff_base_s=0.25,
        max_backoff_s=20.0,
        max_retry_after_s=60.0,
    )
    poll = PollConfig()
    assert (poll.expected_duration_s, poll.min_interval_s, poll.max_interval_s) == (3.0, 0.1, 5.0)
    assert 0 < poll.tuning.first_poll_fraction < 0.5


def test_sync_request_timeout_outlasts_the_servers_90_second_hold() -> None:
    assert Timeouts().sync_request_s > 90.0


@pytest.mark.parametrize(
    ("obj", "field"),
    [(Timeouts(), "connect_s"), (RetryConfig(), "max_attempts"), (PollConfig(), "min_interval_s")],
)
def test_configs_are_frozen_and_slotted(obj: Any, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, 1)
    assert not hasattr(obj, "__dict__")


@pytest.mark.parametrize("cls", [Timeouts, RetryConfig, PollConfig])
def test_configs_are_keyword_only(cls: Any) -> None:
    with pytest.raises(TypeError):
        cls(1.0)


def test_task_deadline_may_be_none() -> None:
    assert Timeouts(task_s=None).task_s is None


# (class, field, bad value, text that must appear in the allowed range)
BAD_FIELDS: list[tuple[Any, str, Any, str]] = [
    (Timeouts, "connect_s", 0.0, "> 0"),
    (Timeouts, "request_s", -1.0, "> 0"),
    (Timeouts, "sync_request_s", math.nan, "> 0"),
    (Timeouts, "task_s", 0.0, "or None"),
    (Timeouts, "connect_s", "10", "a number"),
    (RetryConfig, "max_attempts", 0, ">= 1"),
    (RetryConfig, "max_attempts", 2.5, "an integer"),
    (RetryConfig, "max_attempts", True, "an integer"),
    (RetryConfig, "max_submit_attempts", 0, ">= 1"),
    (RetryConfig, "backoff_base_s", -0.1, ">= 0"),
    (RetryConfig, "max_backoff_s", 0.1, ">= 0.25"),
    (RetryConfig, "max_retry_after_s", math.inf, "<= 86400"),
    (PollConfig, "expected_duration_s", 0.0, "> 0"),
    (PollConfig, "min_interval_s", 0.0, "> 0"),
    (PollConfig, "max_interval_s", 0.05, ">= 0.1"),
    (ScheduleTuning, "first_poll_fraction", 0.9, "<= 0.5"),
    (PollConfig, "poll_cost_s", 0.0, "> 0"),
    (ScheduleTuning, "tail_quantile", 0.2, ">= 0.5"),
    (ScheduleTuning, "tail_interval_fraction", 0.0, "> 0"),
    (ScheduleTuning, "created_wait_fraction", 2.0, "<= 1"),
    (ScheduleTuning, "prior_spread", 0.0, ">= 0.01"),
    (ScheduleTuning, "estimator_window", 4, ">= 8"),
]


@pytest.mark.parametrize(
    ("cls", "field", "value", "allowed"),
    BAD_FIELDS,
    ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in BAD_FIELDS],
)
def test_bad_field_raises_validation_error_naming_field_and_range(
    cls: Any, field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(ValidationError) as info:
        cls(**{field: value})
    err = info.value
    assert err.field == field
    assert f"{cls.__name__}.{field}" in str(err)
    assert err.allowed is not None
    assert allowed in err.allowed
    assert allowed in str(err)


def test_validation_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryConfig(max_attempts=0)


def test_replace_revalidates() -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(PollConfig(), min_interval_s=-1.0)
    assert dataclasses.replace(PollConfig(), min_interval_s=2.0).min_interval_s == 2.0


def test_tiers_use_the_first_listed_figures() -> None:
    assert set(TIERS) == {"bronze", "silver", "gold", "ultra"}
    assert TIERS["bronze"] == TierLimits(max_tasks_per_minute=2, max_running=2)
    assert TIERS["silver"] == TierLimits(max_tasks_per_minute=500, max_running=300)
    assert TIERS["gold"] == TierLimits(max_tasks_per_minute=3000, max_running=3000)
    assert TIERS["ultra"] == TierLimits(max_tasks_per_minute=5000, max_running=10000)
    assert TIERS_ALTERNATE["bronze"] == TierLimits(max_tasks_per_minute=10, max_running=3)


def test_tier_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        TIERS["bronze"] = TierLimits(max_tasks_per_minute=1, max_running=1)  # type: ignore[index]


def test_tier_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValidationError, match="max_running"):
        TierLimits(max_tasks_per_minute=1, max_running=0)
