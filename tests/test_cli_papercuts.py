"""What a new user of the command line trips on, driven through the real CLI in a subprocess:
clear messages and the documented exit codes instead of tracebacks and surprises."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Final

import pytest

from tests.test_cli import PRO, cli, write_jobs
from tests.test_cli import server as server  # an emulator in another process (a fixture)

pytestmark = pytest.mark.e2e

FAST: Final = ("--emulator", "--emulator-latency", "fast")


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def test_a_journal_row_that_is_not_json_ends_the_batch_with_exit_2_naming_the_journal(
    tmp_path: Path,
) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl", [{"model": PRO, "prompt": f"p{i}"} for i in range(2)]
    )
    out = tmp_path / "out"
    assert cli("batch", str(jobs), "-o", str(out), "-q", *FAST).returncode == 0
    with closing(sqlite3.connect(out / "journal.sqlite3")) as conn, conn:
        conn.execute("UPDATE jobs SET body = '{\"prompt\": tr' WHERE line = 2")
    r = cli("batch", str(jobs), "-o", str(out), "-q", *FAST)
    assert r.returncode == 2, r.stderr
    _no_traceback(r.stderr)
    assert "journal.sqlite3" in r.stderr and "line 2" in r.stderr and "not JSON" in r.stderr
