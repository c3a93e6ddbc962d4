"""The journal benchmark runs a tiny batch and prints every figure (a run, not a measure)."""

from __future__ import annotations

import pytest

from benchmarks import journal_loop


def test_journal_loop_prints_rates_lags_and_commits(capsys: pytest.CaptureFixture[str]) -> None:
    assert journal_loop.main(["--jobs", "12", "--rounds", "1", "--concurrency", "4"]) == 0
    out = capsys.readouterr().out
    assert "12 jobs, --concurrency 4" in out
    assert "jobs/s(run)" in out
    assert "lag p99 ms" in out
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "1"
    commits, calls = (int(n) for n in row[-1].split("/"))
    # Each job's intent, id and end: at least three calls, grouped into fewer commits.
    assert calls >= 3 * 12
    assert 0 < commits <= calls
