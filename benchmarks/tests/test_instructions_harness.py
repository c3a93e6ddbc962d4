"""The cachegrind harness's arithmetic: per-job differences, the floor's line, the report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks._instructions import (
    Count,
    Measurement,
    _instructions,
    floor_line,
    measure,
    render,
)


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


_FAKE_VALGRIND = """\
import subprocess, sys
args = sys.argv[1:]
out = next(a.split("=", 1)[1] for a in args if a.startswith("--cachegrind-out-file="))
command = [a for a in args if not a.startswith("--")]
code = subprocess.call(command)
with open(out, "w") as f:
    f.write("events: Ir\\nsummary: %d\\n" % (1000 * len(out)))
sys.exit(code)
"""


def test_keep_leaves_each_runs_output_file(tmp_path: Path) -> None:
    # A stand-in for valgrind: runs the worker as is, writes an output file with a summary.
    fake = tmp_path / "valgrind"
    fake.write_text(f"#!{sys.executable}\n{_FAKE_VALGRIND}")
    fake.chmod(0o755)
    kept = tmp_path / "kept"
    kept.mkdir()
    [m] = measure(
        ["ours"],
        sizes=(1, 2),
        warmup=1,
        concurrency=1,
        latency="0",
        valgrind=str(fake),
        limit_s=120.0,
        log=False,
        keep=kept,
    )
    assert sorted(p.name for p in kept.iterdir()) == ["cg.ours.1", "cg.ours.2"]
    assert m.small.instructions == 1000 * len(str(kept / "cg.ours.1"))
    assert (m.small.jobs, m.large.jobs) == (1, 2)
    assert m.large.requests >= 2  # the emulator saw the measured batch's requests
