"""The wake-up harness: the idle loop's cost per wake-up, the report, one real short run."""

from __future__ import annotations

import pytest

from benchmarks._wakeups import main, measure_clients, render, wakeup_cost


def test_an_idle_loop_costs_cpu_time_per_wake_up() -> None:
    # Blocking and waking is what is measured: three 1 ms sleeps.
    cost = wakeup_cost(0.001, 3)
    assert 0 < cost < 0.001  # some CPU time, less than the time asleep


def test_a_client_name_that_is_not_known_fails_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="floor-<interval s>, got 'fastest'"):
        main(["--clients", "fastest", "--lengths"])


def test_a_real_run_reports_cpu_and_sleeps_per_request_of_each_client() -> None:
    rows = measure_clients(["ours", "floor-0.05"], jobs=4, warmup=2, concurrency=2, latency="0")
    assert [r.client for r in rows] == ["ours", "floor-0.05"]
    for row in rows:
        f = row.figures
        assert f.ok == f.jobs == 4
        assert f.emulator.requests_per_job >= 2  # a submit and at least one poll
        # Each client waited on answers from another process: it blocked, and it says so.
        assert f.worker.measured.sleeps >= 1
        assert f.sleeps_per_request == pytest.approx(
            f.worker.measured.sleeps / (f.emulator.requests_per_job * 4)
        )
    text = render([(0.01, 190e-6)], rows)
    assert "| 10 ms | 190 |" in text
    ours = next(line for line in text.splitlines() if line.startswith("| ours | 2 |"))
    f = rows[0].figures
    assert f"| {f.cpu_us_per_request:.0f} | {f.sleeps_per_request:.2f} |" in ours
