"""The catalogue check's benchmarks run and print each figure (a tiny run, not a measure)."""

from __future__ import annotations

import pytest

from benchmarks import input_check, schema_check


def test_input_check_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert input_check.main(["--rounds", "2", "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "first submit, 5 models" in out
    assert "first submit, 305 models" in out
    assert "the check of one submit (10 fields)" in out
    assert "median paired difference" in out


def test_schema_check_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert schema_check.main(["--rounds", "2", "--batch", "3"]) == 0
    out = capsys.readouterr().out
    assert "check, valid 10-field input" in out
    assert "problems, 3 problems" in out
