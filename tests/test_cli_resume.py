"""Resuming a batch, through the real CLI against an emulator in another process: the
collected tasks count against --concurrency, and a task id that answers with another job's
model or prompt is reported, never saved as this line's result."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import (
    CANARY,
    finish,
    popen,
    states,
    stats,
    tagged,
    tasks_for,
    wait_for,
    write_jobs,
)
from tests.test_cli import server as server  # an emulator in another process (a fixture)

pytestmark = pytest.mark.e2e


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    """The largest number of these tasks that were running on the server at one time."""
    events = sorted(
        [(t["created_at"], 1) for t in tasks] + [(t["finished_at"], -1) for t in tasks],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_a_resumed_batch_runs_no_more_than_concurrency_tasks(tmp_path: Path, server: str) -> None:
    tag = f"cap-{uuid.uuid4().hex[:8]}"
    # Four slow tasks are running when the first run is killed; four jobs still wait.
    jobs = write_jobs(tmp_path / "jobs.jsonl", tagged(tag, [3000] * 4 + [300] * 4))
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--base-url", server, "--concurrency", "4")
    proc = popen(*args, key=CANARY)
    wait_for(
        out / "journal.sqlite3",
        lambda rows: states(rows).get("created", 0) == 4 and "submitting" not in states(rows),
        proc,
    )
    proc.send_signal(signal.SIGKILL)
    finish(proc)

    code, out_text, err_text = finish(popen(*args, key=CANARY))
    assert code == 0, err_text
    assert "4 collected from an earlier run" in out_text
    records = stats(server)["tasks"]
    mine = [records[tid] for tid in tasks_for(server, tag)]
    assert len(mine) == 8 and all(t["finished_at"] is not None for t in mine)
    # The four collected tasks held the batch's four places until they ended.
    assert most_at_once(mine) <= 4
