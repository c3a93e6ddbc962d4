"""The cachegrind harness's arithmetic: per-job differences, the floor's line, the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._instructions import Count, Measurement, _instructions, floor_line, render


def test_per_job_figures_are_differences_of_the_two_runs() -> None:
    m = Measurement("ours", Count(100, 2_000_000_000, 450), Count(300, 2_500_000_000, 1_400))
    assert m.per_job == 2_500_000
    assert m.requests_per_job == 4.75


def test_the_floor_line_passes_through_its_points() -> None:
    line = floor_line([(3.0, 1.5e6), (5.0, 2.5e6), (9.0, 4.5e6)])
    assert line is not None
    intercept, slope = line
    assert intercept == pytest.approx(0.0, abs=1e-6)
    assert slope == pytest.approx(0.5e6)
    assert floor_line([(3.0, 1.0)]) is None
    assert floor_line([(3.0, 1.0), (3.0, 2.0)]) is None


def test_the_report_puts_ours_against_the_floor_line() -> None:
    results = [
        Measurement("ours", Count(100, 1_000_000_000, 200), Count(300, 1_600_000_000, 1_000)),
        Measurement("floor-1", Count(100, 1_000_000_000, 300), Count(300, 1_300_000_000, 900)),
        Measurement("floor-0.5", Count(100, 1_000_000_000, 500), Count(300, 1_500_000_000, 1_500)),
    ]
    text = render(results)
    # ours: 3.0 M at 4.0 requests/job; the floor's line 0.5 M per request through 0: 2.0 M.
    assert "| ours | 3.000 M | 4.00 | 750 k |" in text
    assert "ours / floor 1.500x" in text


def test_the_total_comes_from_the_summary_line(tmp_path: Path) -> None:
    out = tmp_path / "cachegrind.out"
    out.write_text("desc: I1 cache:\ncmd: python\nevents: Ir\nfl=x\n1 5\nsummary: 1234567\n")
    assert _instructions(out) == 1_234_567
    out.write_text("events: Ir\n")
    with pytest.raises(RuntimeError, match="no summary"):
        _instructions(out)
