"""Resuming a batch, through the real CLI against an emulator in another process.

The collected tasks count against --concurrency, and a task id that answers with another
job's model or prompt is reported, never saved as this line's result.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import (
    CANARY,
    DEV,
    PRO,
    cli,
    emulator_process,
    finish,
    manifest,
    popen,
    states,
    stats,
    tagged,
    tasks_for,
    wait_for,
    write_jobs,
)
from tests.test_cli import server as server  # an emulator in another process (a fixture)
from wavespeed_async.cli._jobs import parse_jobs
from wavespeed_async.jobs.journal import Journal

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


def _submit(base: str, model: str, prompt: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - http on 127.0.0.1
        f"{base}/api/v3/{model}",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Authorization": f"Bearer {CANARY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        task_id: str = json.loads(answer.read())["data"]["id"]
    return task_id


def _journaled_as_line_one(tmp_path: Path, server: str, task_id: str) -> tuple[Path, Path]:
    """A one-line jobs file and a journal that says its task is ``task_id``: (jobs, out)."""
    jobs_path = write_jobs(tmp_path / "jobs.jsonl", [{"model": PRO, "prompt": "a lighthouse"}])
    [job] = parse_jobs(jobs_path.read_text(), default_model=None, base=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with Journal.open(out / "journal.sqlite3") as journal:
        journal.set_meta("target", server)
        journal.ensure(1, job.hash, PRO)
        journal.mark_submitting(1, {"prompt": "a lighthouse"}, PRO)
        journal.mark_created(1, task_id)
    return jobs_path, out


def test_a_collected_id_that_answers_with_another_model_is_reported_not_saved(
    tmp_path: Path, server: str
) -> None:
    # The journal says line 1's task is X; on the server, X is another job (another model).
    other = _submit(server, DEV, f"someone else's job {uuid.uuid4().hex[:8]}")
    jobs_path, out = _journaled_as_line_one(tmp_path, server, other)
    r = cli("batch", str(jobs_path), "-o", str(out), "--base-url", server, key=CANARY)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"line 1: task {other} answers with model '{DEV}'" in r.stderr
    [entry] = manifest(out)
    assert entry["status"] == "failed" and "another job" in entry["error"]
    assert not list(out.glob("line00001_*")), "another job's image was saved as line 1's"
    # --retry-failed runs the line as a new job, with its own task.
    again = cli(
        "batch", str(jobs_path), "-o", str(out), "--base-url", server, "--retry-failed", key=CANARY
    )
    assert again.returncode == 0, again.stderr
    [entry] = manifest(out)
    assert entry["status"] == "completed" and entry["task_id"] != other


@pytest.fixture(scope="module")
def echoing() -> Iterator[str]:
    """An emulator whose every answer about a task carries its inputs, polls included."""
    with emulator_process("--echo-input") as url:
        yield url


def test_a_collected_id_that_answers_with_another_prompt_is_reported_not_saved(
    tmp_path: Path, echoing: str
) -> None:
    # The journal says line 1's task is X; on the server, X is the same model's task of
    # another prompt, which the server's answers echo.
    other = _submit(echoing, PRO, f"someone else's job {uuid.uuid4().hex[:8]}")
    jobs_path, out = _journaled_as_line_one(tmp_path, echoing, other)
    r = cli("batch", str(jobs_path), "-o", str(out), "--base-url", echoing, key=CANARY)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f'line 1: task {other} answers with another prompt ("someone else' in r.stderr
    [entry] = manifest(out)
    assert entry["status"] == "failed" and "another job" in entry["error"]
    assert not list(out.glob("line00001_*")), "another job's image was saved as line 1's"
