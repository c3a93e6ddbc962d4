"""The wake-up harness: the idle loop's cost per wake-up, the report, one real short run."""

from __future__ import annotations

import pytest

from benchmarks import _wakeups
from benchmarks._run import scenario_named
from benchmarks._wakeups import main, measure_clients, render, wakeup_cost


def test_an_idle_loop_costs_cpu_time_per_wake_up() -> None:
    # Blocking and waking is what is measured: three 1 ms sleeps.
    cost = wakeup_cost(0.001, 3)
    assert 0 < cost < 0.001  # some CPU time, less than the time asleep


def test_a_client_name_that_is_not_known_fails_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def measured(*args: object) -> float:
        raise AssertionError("an idle loop was measured before the names were checked")

    monkeypatch.setattr(_wakeups, "wakeup_cost", measured)
    for name in ("fastest", "floor-0", "floor-nan", "floor-x"):
        with pytest.raises(SystemExit) as exit_:
            main(["--clients", "ours", name])
        assert exit_.value.code == 2
        assert f"floor-<interval s> with an interval above 0, got {name!r}" in (
            capsys.readouterr().err
        )


def test_sleep_lengths_must_be_above_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--lengths", "0.01", "0"])
    assert "every sleep length must be above 0 s, got 0.0" in capsys.readouterr().err


def test_a_floor_is_named_as_the_full_benchmark_names_it_or_without_its_unit() -> None:
    assert scenario_named("floor-0.5s").poll_interval_s == 0.5
    assert scenario_named("floor-0.25").name == "floor-0.25s"


def test_ours_with_a_subscriber_to_its_events_is_named_by_the_subscriber() -> None:
    assert scenario_named("ours").events == ""
    assert scenario_named("ours-events").events == "listener"
    assert scenario_named("ours-stream").events == "stream"
    assert scenario_named("ours-stream").client == "ours"


def test_a_subscribed_client_runs_its_batches_to_the_end() -> None:
    rows = measure_clients(
        ["ours-events", "ours-stream"], jobs=4, warmup=2, concurrency=2, latency="0"
    )
    assert [r.figures.ok for r in rows] == [4, 4]


def test_a_real_run_reports_cpu_and_sleeps_per_request_of_each_client() -> None:
    rows = measure_clients(["ours", "floor-0.05"], jobs=4, warmup=2, concurrency=2, latency="0")
    assert [r.client for r in rows] == ["ours", "floor-0.05"]
    for row in rows:
        f = row.figures
        assert f.ok == f.jobs == 4
        assert f.emulator.requests_per_job >= 2  # a submit and at least one poll
        # Each client waited on answers from another process: it blocked, and it says so.
        sleeps = f.worker.measured.sleeps
        assert sleeps is not None
        assert sleeps >= 1
        assert f.sleeps_per_request == pytest.approx(sleeps / (f.emulator.requests_per_job * 4))
    text = render([(0.01, 190e-6)], rows)
    assert "| 10 ms | 190 |" in text
    ours = next(line for line in text.splitlines() if line.startswith("| ours | 2 |"))
    f = rows[0].figures
    assert f"| {f.cpu_us_per_request:.0f} | {f.sleeps_per_request:.2f} |" in ours
