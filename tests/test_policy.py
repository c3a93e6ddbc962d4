"""The sans-IO policy core: tables and Hypothesis properties, no network, no sleeping."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.simulate import simulate_fixed_polling, simulate_polling
from wavespeed_async._core.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from wavespeed_async._core.policy import (
    FailureKind,
    backoff_delay,
    classify_status,
    decide_get_retry,
    decide_submit_retry,
    error_class_for,
    is_failure,
    is_terminal,
    parse_retry_after,
    submit_outcome_unknown,
    unknown_outcome_cause,
)
from wavespeed_async._core.schedule import MAX_WINDOW, DurationEstimator, next_poll_delay
from wavespeed_async._core.settings import PollConfig, RetryConfig, ScheduleTuning

NOW = 1_700_000_000.0  # a fixed unix time: 2023-11-14T22:13:20Z
C, R, T, S, M = (
    FailureKind.CONNECT,
    FailureKind.RESET,
    FailureKind.TIMEOUT,
    FailureKind.STATUS,
    FailureKind.MALFORMED,
)

# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Tue, 14 Nov 2023 22:13:30 GMT", 10.0),  # 10 s after NOW
        ("Tue, 14 Nov 2023 22:13:30 -0000", 10.0),  # no zone info: UTC
        ("Tue, 14 Nov 2023 23:13:30 +0100", 10.0),
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past
        ("Tue, 99 Foo 2023 22:13:00 GMT", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    got = parse_retry_after(header, now=NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@given(st.text(max_size=40))
def test_parse_retry_after_never_negative_never_raises(header: str) -> None:
    got = parse_retry_after(header, now=NOW)
    assert got is None or (got >= 0 and math.isfinite(got))


# --------------------------------------------------------------------------- backoff


def test_backoff_caps_grow_by_doubling_up_to_the_maximum() -> None:
    cfg = RetryConfig(backoff_base_s=0.25, max_backoff_s=2.0)
    caps = {a: max(backoff_delay(a, cfg, random.Random(s)) for s in range(300)) for a in (1, 2, 4)}
    assert 0.2 < caps[1] <= 0.25
    assert 0.4 < caps[2] <= 0.5
    assert 1.6 < caps[4] <= 2.0  # 0.25 * 8 = 2.0


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    cfg = RetryConfig()
    assert backoff_delay(3, cfg, random.Random(5)) == backoff_delay(3, cfg, random.Random(5))


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, RetryConfig(), random.Random(0))


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_backoff_stays_within_full_jitter_bounds(attempt: int, seed: int) -> None:
    cfg = RetryConfig(backoff_base_s=0.25, max_backoff_s=20.0)
    delay = backoff_delay(attempt, cfg, random.Random(seed))
    assert 0.0 <= delay <= min(20.0, 0.25 * 2.0 ** min(attempt - 1, 100))


# --------------------------------------------------------------------------- retry tables

# (kind, status, retry_after_s, GET retried?, submit re-sent?, submit outcome unknown?)
RETRY_TABLE: list[tuple[FailureKind, int | None, float | None, bool, bool, bool]] = [
    (C, None, None, True, True, False),
    (R, None, None, True, False, True),
    (T, None, None, True, False, True),
    (M, None, None, True, False, True),
    (S, 400, None, False, False, False),
    (S, 401, None, False, False, False),
    (S, 403, None, False, False, False),
    (S, 404, None, False, False, False),
    (S, 408, None, True, False, False),
    (S, 413, None, False, False, False),
    (S, 422, None, False, False, False),
    (S, 429, None, True, True, False),
    (S, 429, 3.0, True, True, False),
    (S, 500, None, True, False, True),
    (S, 502, None, True, False, True),
    (S, 503, None, True, False, True),
    (S, 503, 2.0, True, True, False),
    (S, 504, None, True, False, True),
    (S, 504, 2.0, True, False, True),
]


@pytest.mark.parametrize(
    ("kind", "status", "retry_after", "get_retried", "submit_resent", "unknown"),
    RETRY_TABLE,
    ids=[f"{k.value}-{s}-{ra}" for k, s, ra, *_ in RETRY_TABLE],
)
def test_retry_table(
    kind: FailureKind,
    status: int | None,
    retry_after: float | None,
    get_retried: bool,
    submit_resent: bool,
    unknown: bool,
) -> None:
    common = {
        "status": status,
        "retry_after_s": retry_after,
        "attempt": 1,
        "config": RetryConfig(),
        "time_left_s": None,
    }
    get = decide_get_retry(kind, rng=random.Random(0), **common)  # type: ignore[arg-type]
    post = decide_submit_retry(kind, rng=random.Random(0), **common)  # type: ignore[arg-type]
    assert get.retry is get_retried, get.reason
    assert post.retry is submit_resent, post.reason
    assert submit_outcome_unknown(kind, status=status, retry_after_s=retry_after) is unknown
    # A submit that may have created a task is never re-sent: the two never overlap.
    assert not (post.retry and unknown)
    if not get.retry:
        assert get.delay_s == 0.0


def test_retry_after_is_honoured_and_clamped_to_the_cap() -> None:
    cfg = RetryConfig(max_retry_after_s=10.0)
    args = {"status": 429, "attempt": 1, "config": cfg, "rng": random.Random(0)}
    d = decide_get_retry(S, retry_after_s=4.0, time_left_s=None, **args)  # type: ignore[arg-type]
    assert (d.retry, d.delay_s) == (True, 4.0)
    d = decide_get_retry(S, retry_after_s=500.0, time_left_s=None, **args)  # type: ignore[arg-type]
    assert (d.retry, d.delay_s) == (True, 10.0)
    d = decide_submit_retry(S, retry_after_s=500.0, time_left_s=None, **args)  # type: ignore[arg-type]
    assert (d.retry, d.delay_s) == (True, 10.0)


def test_no_retry_when_the_wait_would_pass_the_deadline() -> None:
    d = decide_get_retry(
        S,
        status=503,
        retry_after_s=5.0,
        attempt=1,
        config=RetryConfig(),
        rng=random.Random(0),
        time_left_s=4.0,
    )
    assert not d.retry
    assert "deadline" in d.reason


@pytest.mark.parametrize("decide", [decide_get_retry, decide_submit_retry])
def test_no_retry_once_attempts_are_exhausted(decide: Callable[..., object]) -> None:
    cfg = RetryConfig(max_attempts=3, max_submit_attempts=3)
    kw = {"status": None, "retry_after_s": None, "config": cfg, "time_left_s": None}
    assert decide(C, attempt=2, rng=random.Random(0), **kw).retry  # type: ignore[attr-defined]
    last = decide(C, attempt=3, rng=random.Random(0), **kw)
    assert not last.retry  # type: ignore[attr-defined]
    assert "exhausted" in last.reason  # type: ignore[attr-defined]


@settings(max_examples=300)
@given(
    kind=st.sampled_from(list(FailureKind)),
    status=st.one_of(st.none(), st.integers(100, 599)),
    retry_after=st.one_of(st.none(), st.floats(-10, 1e6)),
    attempt=st.integers(1, 20),
    time_left=st.one_of(st.none(), st.floats(0, 100)),
    seed=st.integers(0, 1000),
)
def test_retry_decisions_respect_attempts_deadline_and_submit_safety(
    kind: FailureKind,
    status: int | None,
    retry_after: float | None,
    attempt: int,
    time_left: float | None,
    seed: int,
) -> None:
    cfg = RetryConfig(max_attempts=5, max_submit_attempts=4)
    kw = {"status": status, "retry_after_s": retry_after, "attempt": attempt, "config": cfg}
    for decide, limit in ((decide_get_retry, 5), (decide_submit_retry, 4)):
        d = decide(kind, rng=random.Random(seed), time_left_s=time_left, **kw)  # type: ignore[arg-type]
        assert d.delay_s >= 0.0
        if d.retry:
            assert attempt < limit
            assert d.delay_s <= max(cfg.max_backoff_s, cfg.max_retry_after_s)
            assert time_left is None or d.delay_s <= time_left
        else:
            assert d.delay_s == 0.0
    post = decide_submit_retry(kind, rng=random.Random(seed), time_left_s=None, **kw)  # type: ignore[arg-type]
    if post.retry:
        assert kind is C or status == 429 or (status == 503 and retry_after is not None)
        assert not submit_outcome_unknown(kind, status=status, retry_after_s=retry_after)


@pytest.mark.parametrize(
    ("kind", "status", "cause"),
    [(R, None, "reset"), (T, None, "timeout"), (M, None, "malformed"), (S, 502, "server_error")],
)
def test_unknown_outcome_cause_names_what_went_wrong(
    kind: FailureKind, status: int | None, cause: str
) -> None:
    assert unknown_outcome_cause(kind, status=status) == cause


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "terminal", "failure"),
    [
        ("created", False, False),
        ("processing", False, False),
        ("completed", True, False),
        ("failed", True, True),
        ("cancelled", True, True),
        ("timeout", True, True),
        ("deleted", True, True),
        ("queued-for-gpu", False, False),  # unknown: keep polling
        ("", False, False),
    ],
)
def test_terminal_and_failure_statuses(status: str, terminal: bool, failure: bool) -> None:
    assert is_terminal(status) is terminal
    assert is_failure(status) is failure


@pytest.mark.parametrize(
    ("http", "code", "expected"),
    [
        (200, None, None),
        (200, 0, None),
        (200, 200, None),
        (201, 201, None),
        (200, 500, 500),  # a 200 carrying code 500
        (200, 429, 429),
        (200, 400, 400),
        (400, None, 400),
        (500, 200, 500),  # the HTTP error wins
        (503, None, 503),
        (404, 404, 404),
    ],
)
def test_classify_status_checks_http_status_and_envelope_code(
    http: int, code: int | None, expected: int | None
) -> None:
    assert classify_status(http, code) == expected


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (413, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (599, ServerError),
        (409, APIStatusError),
        (418, APIStatusError),
        (302, APIStatusError),
    ],
)
def test_error_class_for_status(status: int, cls: type[APIStatusError]) -> None:
    assert error_class_for(status) is cls


# --------------------------------------------------------------------------- estimator


def test_estimator_answers_from_the_prior_before_observations() -> None:
    est = DurationEstimator(3.0)
    assert est.count == 0
    assert est.quantile(0.5) == pytest.approx(3.0)
    assert est.quantile(0.05) < 3.0 < est.quantile(0.95)
    assert est.cdf(3.0) == pytest.approx(0.5)


def test_estimator_recentres_the_prior_on_the_first_observations() -> None:
    est = DurationEstimator(3.0)
    est.observe(10.0)
    est.observe(40.0)
    assert est.quantile(0.5) == pytest.approx(20.0)  # geometric mean


def test_estimator_uses_the_observed_distribution_once_it_has_a_few() -> None:
    est = DurationEstimator(100.0)
    for d in (1.0, 2.0, 3.0, 4.0, 5.0):
        est.observe(d)
    assert est.quantile(0.0) == 1.0
    assert est.quantile(0.5) == 3.0
    assert est.quantile(1.0) == 5.0
    assert est.quantile(0.125) == pytest.approx(1.5)
    assert est.cdf(1.5) == pytest.approx(0.125)
    assert est.cdf(0.5) == 0.0
    assert est.cdf(9.0) == 1.0


def test_estimator_forgets_beyond_its_window() -> None:
    est = DurationEstimator(3.0, window=10)
    for _ in range(10):
        est.observe(100.0)
    for _ in range(10):
        est.observe(1.0)
    assert est.count == 10
    assert est.quantile(1.0) == 1.0


def test_estimator_grown_to_a_wave_learns_the_whole_distribution_not_its_tail() -> None:
    # 2,000 tasks started together end in order of duration: the last 256 are the longest.
    rng = random.Random(7)
    durations = sorted(rng.lognormvariate(math.log(10.0), 0.4) for _ in range(2000))
    true_p10 = durations[len(durations) // 10]
    small, grown = DurationEstimator(3.0), DurationEstimator(3.0)
    grown.grow_window(len(durations))
    for d in durations:
        small.observe(d)
        grown.observe(d)
    assert grown.window == 2000 and grown.count == 2000
    assert grown.quantile(0.1) == pytest.approx(true_p10, rel=0.01)
    # The fixed window holds only the tail of the wave: its "10th percentile" is later
    # than 85 % of the wave's tasks.
    assert small.quantile(0.1) > durations[int(0.85 * len(durations))]


def test_estimator_grow_window_keeps_the_ring_order_and_is_capped() -> None:
    est = DurationEstimator(3.0, window=8)
    for i in range(12):  # the ring holds 4..11, its oldest (4) in the middle of the list
        est.observe(float(i))
    est.grow_window(10)
    est.grow_window(5)  # never shrinks
    assert est.window == 10
    for d in (12.0, 13.0, 14.0):  # fills to 10, then replaces the oldest: 4
        est.observe(d)
    assert est.count == 10
    assert est.quantile(0.0) == 5.0 and est.quantile(1.0) == 14.0
    est.grow_window(10**9)
    assert est.window == MAX_WINDOW


def test_estimator_ignores_non_finite_and_clamps_negative_durations() -> None:
    est = DurationEstimator(3.0)
    est.observe(math.nan)
    est.observe(math.inf)
    assert est.count == 0
    est.observe(-1.0)
    assert est.count == 1


@pytest.mark.parametrize(
    "kwargs", [{"prior_s": 0.0}, {"prior_s": math.nan}, {"prior_s": 1.0, "window": 0}]
)
def test_estimator_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        DurationEstimator(**kwargs)  # type: ignore[arg-type]


def test_estimator_repr_shows_live_state() -> None:
    assert "count=0" in repr(DurationEstimator(3.0))


def test_observe_detection_records_the_midpoint_of_the_bracket() -> None:
    est = DurationEstimator(3.0)
    est.observe_detection(3.2, 3.0)
    assert est.quantile(0.5) == pytest.approx(3.1)


def test_a_first_poll_placed_too_late_learns_that_tasks_got_faster() -> None:
    # Trained on 30 s tasks; the model now takes 3 s. Every task is done at its first poll,
    # which would teach nothing if first-poll hits were recorded as they are seen.
    est = DurationEstimator(3.0)
    for _ in range(256):
        est.observe(30.0 + random.Random(len(str(_))).random())
    simulate_polling([3.0] * 300, PollConfig(), warmup=0, estimator=est)
    assert est.quantile(0.05) < 4.0


durations_st = st.lists(st.floats(0.0, 1000.0), min_size=0, max_size=300)


@given(durations=durations_st, qs=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_estimator_quantiles_are_monotone_in_q(durations: list[float], qs: list[float]) -> None:
    est = DurationEstimator(3.0, window=64)
    for d in durations:
        est.observe(d)
    values = [est.quantile(q) for q in sorted(qs)]
    assert all(a <= b for a, b in pairwise(values))
    assert all(v >= 0 and math.isfinite(v) for v in values)


@given(durations=durations_st, ts=st.lists(st.floats(0.0, 2000.0), min_size=2, max_size=20))
def test_estimator_cdf_is_monotone_and_within_zero_one(
    durations: list[float], ts: list[float]
) -> None:
    est = DurationEstimator(3.0, window=64)
    for d in durations:
        est.observe(d)
    values = [est.cdf(t) for t in sorted(ts)]
    assert all(a <= b for a, b in pairwise(values))
    assert all(0.0 <= v <= 1.0 for v in values)


@given(durations=st.lists(st.floats(0.0, 100.0), max_size=500), window=st.integers(1, 50))
def test_estimator_memory_is_bounded_by_its_window(durations: list[float], window: int) -> None:
    est = DurationEstimator(3.0, window=window)
    for d in durations:
        est.observe(d)
        est.quantile(0.5)
    assert est.count == min(len(durations), window)
    assert len(est._buf) <= window
    assert est._sorted is None or len(est._sorted) <= window


# --------------------------------------------------------------------------- polling


def learned(durations: list[float], config: PollConfig | None = None) -> DurationEstimator:
    est = DurationEstimator.from_config(config or PollConfig())
    for d in durations:
        est.observe(d)
    return est


def schedule(est: DurationEstimator, config: PollConfig, until_s: float) -> list[float]:
    """Poll times of a task that never ends before ``until_s``."""
    t, polls, times = 0.0, 0, []
    while t < until_s:
        t += next_poll_delay(
            elapsed_s=t, polls_done=polls, status="processing", estimator=est, config=config
        )
        polls += 1
        times.append(t)
    return times


UNIFORM = [random.Random(1).uniform(2.5, 3.5) for _ in range(256)]


def test_first_poll_waits_for_the_first_plausible_completion() -> None:
    cfg = PollConfig()
    est = learned(UNIFORM, cfg)
    first = next_poll_delay(
        elapsed_s=0.0, polls_done=0, status="created", estimator=est, config=cfg
    )
    assert first == pytest.approx(est.quantile(cfg.tuning.first_poll_fraction))
    assert 2.5 <= first <= 2.7


def test_polls_are_dense_inside_the_bulk() -> None:
    cfg = PollConfig()
    times = schedule(learned(UNIFORM, cfg), cfg, 3.5)
    gaps = [b - a for a, b in pairwise(times)]
    assert 3 <= len(times) <= 8
    assert max(gaps) <= 0.4


def test_a_task_ten_times_late_is_polled_ever_more_sparsely() -> None:
    cfg = PollConfig()
    times = schedule(learned(UNIFORM, cfg), cfg, 60.0)
    gaps = [b - a for a, b in pairwise(times) if a > 4.0]
    assert all(x <= y + 1e-9 for x, y in pairwise(gaps))  # non-decreasing in the tail
    assert gaps[-1] == pytest.approx(cfg.max_interval_s)
    assert len([t for t in times if t > 30.0]) <= 10  # not every 100 ms (300 polls)


def test_a_slow_models_first_wait_may_exceed_the_max_interval() -> None:
    cfg = PollConfig()
    est = learned([60.0 + i * 0.1 for i in range(100)], cfg)
    first = next_poll_delay(
        elapsed_s=0.0, polls_done=0, status="created", estimator=est, config=cfg
    )
    assert first > cfg.max_interval_s
    later = next_poll_delay(
        elapsed_s=first, polls_done=1, status="processing", estimator=est, config=cfg
    )
    assert later <= cfg.max_interval_s


def test_a_task_still_created_after_a_poll_is_queued_and_polled_less() -> None:
    cfg = PollConfig()
    est = learned(UNIFORM, cfg)
    kw = {"elapsed_s": 2.7, "polls_done": 1, "estimator": est, "config": cfg}
    running = next_poll_delay(status="processing", **kw)  # type: ignore[arg-type]
    queued = next_poll_delay(status="created", **kw)  # type: ignore[arg-type]
    assert queued >= cfg.tuning.created_wait_fraction * est.quantile(cfg.tuning.first_poll_fraction)
    assert queued > running


configs_st = st.builds(
    PollConfig,
    expected_duration_s=st.floats(0.01, 600.0),
    min_interval_s=st.floats(0.01, 1.0),
    max_interval_s=st.floats(1.0, 30.0),
    poll_cost_s=st.floats(0.001, 5.0),
    tuning=st.builds(
        ScheduleTuning,
        first_poll_fraction=st.floats(0.0, 0.5),
        tail_quantile=st.floats(0.5, 1.0),
        tail_interval_fraction=st.floats(0.01, 1.0),
        created_wait_fraction=st.floats(0.0, 1.0),
        prior_spread=st.floats(0.01, 3.0),
    ),
)


@settings(max_examples=300)
@given(
    config=configs_st,
    durations=st.lists(st.floats(0.0, 500.0), max_size=100),
    elapsed=st.one_of(st.floats(0.0, 1e5), st.just(math.nan), st.just(-1.0)),
    polls_done=st.integers(0, 1000),
    status=st.sampled_from(["created", "processing", "something-new"]),
)
def test_poll_delays_are_within_bounds_and_deterministic(
    config: PollConfig, durations: list[float], elapsed: float, polls_done: int, status: str
) -> None:
    est = learned(durations, config)
    kw = {"elapsed_s": elapsed, "polls_done": polls_done, "status": status, "config": config}
    delay = next_poll_delay(estimator=est, **kw)  # type: ignore[arg-type]
    assert math.isfinite(delay)
    assert delay >= config.min_interval_s
    t = elapsed if math.isfinite(elapsed) and elapsed > 0 else 0.0
    first = est.quantile(config.tuning.first_poll_fraction)
    # Only the wait up to the first plausible completion may exceed the maximum.
    assert delay <= config.max_interval_s or delay == pytest.approx(first - t)
    assert next_poll_delay(estimator=est, **kw) == delay  # type: ignore[arg-type]
    assert next_poll_delay(estimator=learned(durations, config), **kw) == delay  # type: ignore[arg-type]


# --------------------------------------------------------------------------- simulation


def lognormal_durations(
    n: int, seed: int, median_s: float = 3.0, sigma: float = 0.45
) -> list[float]:
    """Durations of 1-6 s around a 3 s median, like Kontext image tasks."""
    rng = random.Random(seed)
    return [min(6.0, max(1.0, median_s * math.exp(rng.gauss(0.0, sigma)))) for _ in range(n)]


def test_simulation_beats_fixed_intervals_on_a_broad_distribution() -> None:
    durations = lognormal_durations(1500, seed=11)
    adaptive = simulate_polling(durations, PollConfig(), warmup=50)
    every_1s = simulate_fixed_polling(durations[50:], 1.0)
    every_100ms = simulate_fixed_polling(durations[50:], 0.1)
    assert adaptive.tasks == 1450
    assert adaptive.mean_polls < every_100ms.mean_polls / 4
    assert adaptive.p50_detection_s < every_1s.p50_detection_s * 0.6
    assert adaptive.p95_detection_s < every_1s.p95_detection_s


def test_simulation_meets_the_targets_on_a_narrow_distribution() -> None:
    rng = random.Random(3)
    durations = [rng.uniform(2.5, 3.5) for _ in range(1500)]
    adaptive = simulate_polling(durations, PollConfig(), warmup=50)
    every_1s = simulate_fixed_polling(durations[50:], 1.0)
    assert adaptive.p50_detection_s < 0.15
    assert adaptive.mean_polls <= 4.5
    assert adaptive.mean_polls <= every_1s.mean_polls + 0.5
    assert adaptive.p95_detection_s < every_1s.p95_detection_s / 2


def test_simulation_is_deterministic() -> None:
    durations = lognormal_durations(300, seed=5)
    assert simulate_polling(durations, PollConfig()) == simulate_polling(durations, PollConfig())


def test_fixed_polling_simulation_counts_polls_and_latency() -> None:
    sim = simulate_fixed_polling([0.5, 1.0, 2.5], 1.0)
    assert sim.mean_polls == pytest.approx((1 + 1 + 3) / 3)
    assert sim.p50_detection_s == pytest.approx(0.5)
    assert sim.mean_detection_s == pytest.approx((0.5 + 0.0 + 0.5) / 3)


def test_simulation_needs_tasks_after_the_warmup() -> None:
    with pytest.raises(ValueError, match="warmup"):
        simulate_polling([1.0, 2.0], PollConfig(), warmup=2)
    with pytest.raises(ValueError, match="durations"):
        simulate_polling([1.0, math.nan], PollConfig(), warmup=0)


def test_estimator_repr_survives_a_failed_init() -> None:
    est = DurationEstimator.__new__(DurationEstimator)
    assert repr(est) == "DurationEstimator(<not initialised>)"
    with pytest.raises(ValueError, match="prior_s"):
        DurationEstimator(-1.0)
