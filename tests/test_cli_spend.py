"""The command line's spend options, in a subprocess.

``--dry-run``, the balance check, ``--max-spend``, ``--reconcile``, and the cost in the
manifest and the gallery.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest

from tests.test_cli import DEV, cli, emulator_process, manifest, stats, write_jobs
from wavespeed_async.cli._jobs import parse_jobs
from wavespeed_async.jobs.journal import Journal

pytestmark = pytest.mark.e2e

VIDEO: Final = "wavespeed-ai/wan-2.2/t2v-480p"


@pytest.fixture
def server() -> Iterator[str]:
    """An emulator of its own (a fresh balance of $100) in another process."""
    with emulator_process() as url:
        yield url


@pytest.fixture
def poor() -> Iterator[str]:
    """An emulator whose account has $0.10 and refuses what it cannot pay."""
    with emulator_process("--initial-balance", "0.1", "--enforce-balance") as url:
        yield url


JOBS: Final[list[dict[str, Any]]] = [
    {"prompt": "one"},
    {"prompt": "two", "num_images": 2},
    {"prompt": "three [fail]"},
    {"model": VIDEO, "prompt": "a film", "duration": 8},
]


def test_dry_run_sends_no_submit_and_prints_the_right_total(tmp_path: Path, server: str) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [*JOBS, "not json"])
    out = tmp_path / "out"
    r = cli("batch", str(jobs), "-o", str(out), "--model", DEV, "--base-url", server,
            "--dry-run", key="k")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "4 job(s) to submit (1 invalid" in r.stdout
    assert f"{DEV}       3 job(s)       $0.10" in r.stdout  # 0.025 + 0.05 + 0.025
    assert f"{VIDEO}       1 job(s)       $0.24" in r.stdout
    assert "total" in r.stdout and "$0.34" in r.stdout
    assert "Balance: $100.00 (enough)" in r.stdout
    s = stats(server)
    assert s["submits_received"] == 0 and s["tasks_created"] == 0
    assert not out.exists()  # nothing written either


def test_a_batch_whose_quote_exceeds_the_balance_is_refused_unless_told(
    tmp_path: Path, poor: str
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    args = ("batch", str(jobs), "-o", str(tmp_path / "out"), "--model", DEV, "--base-url", poor)
    r = cli(*args, key="k")
    assert r.returncode == 2, r.stderr
    assert "quote is $0.34 and the balance is $0.10" in r.stderr
    assert "--ignore-balance" in r.stderr
    assert stats(poor)["submits_received"] == 0

    r = cli(*args, "--max-spend", "0.1", key="k")  # within the balance: it starts
    assert r.returncode == 1, r.stderr
    assert Decimal(str(stats(poor)["charged_usd"])) <= Decimal("0.1")


def test_a_batch_that_runs_out_of_money_keeps_the_refused_jobs_pending(
    tmp_path: Path, poor: str
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"p{i}"} for i in range(6)])
    out = tmp_path / "out"
    r = cli("batch", str(jobs), "-o", str(out), "--model", DEV, "--base-url", poor,
            "--ignore-balance", "--concurrency", "1", key="k")  # fmt: skip
    assert r.returncode == 1, r.stderr
    entries = manifest(out)
    assert [e["status"] for e in entries] == ["completed"] * 4 + ["not_submitted"] * 2
    assert all(e["error"].startswith("balance:") for e in entries[4:])
    assert [e["cost_usd"] for e in entries] == ["0.025"] * 4 + ["0"] * 2
    assert "refused for want of money" in r.stdout
    assert stats(poor)["tasks_created"] == 4


def test_max_spend_holds_jobs_back_and_the_manifest_and_gallery_show_cost(
    tmp_path: Path,
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS)
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--model", DEV, "--emulator",
            "--emulator-latency", "fast", "--concurrency", "1")  # fmt: skip
    r = cli(*args, "--max-spend", "0.1", key=None)
    assert r.returncode == 1, r.stderr
    entries = {e["line"]: e for e in manifest(out)}
    assert entries[1]["cost_usd"] == "0.025" and entries[2]["cost_usd"] == "0.05"
    assert entries[3]["status"] == "failed" and entries[3]["cost_usd"] == "0"  # refunded
    assert entries[4]["status"] == "not_submitted" and entries[4]["cost_usd"] == "0"
    assert entries[4]["error"].startswith("budget: held back by --max-spend $0.10")
    assert "cost:     $0.075 for 3 task(s)" in r.stdout
    assert "budget:   $0.075 spent of --max-spend $0.10" in r.stdout
    assert "line(s) 4 held back by it" in r.stdout
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "cost $0.075" in page and "$0.05" in page


def test_reconcile_collects_a_lost_submits_task_and_sends_no_second(
    tmp_path: Path, server: str
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "lost answer"}, {"prompt": "other"}])
    out = tmp_path / "out"
    # A run whose submit of line 1 reached the server and whose answer was lost.
    parsed = parse_jobs(jobs.read_text(), default_model=DEV, base=tmp_path)
    with Journal.open(out / "journal.sqlite3") as j:
        j.ensure(1, parsed[0].hash, DEV)
        j.mark_submitting(1, parsed[0].inputs)
        j.set_meta("target", server)
    body = json.dumps({"prompt": "lost answer"}).encode()
    req = urllib.request.Request(  # noqa: S310 - the emulator on loopback
        f"{server}/api/v3/{DEV}",
        data=body,
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310
        task_id = json.loads(answer.read())["data"]["id"]

    args = ("batch", str(jobs), "-o", str(out), "--model", DEV, "--base-url", server)
    r = cli(*args, "--reconcile", "--resubmit-unknown", key="k")
    assert r.returncode == 0, r.stderr
    assert f"line 1: found its task {task_id}" in r.stderr
    entries = manifest(out)
    assert [e["status"] for e in entries] == ["completed", "completed"]
    assert entries[0]["task_id"] == task_id
    assert stats(server)["tasks_created"] == 2  # the lost one, once; and line 2


def test_a_bad_max_spend_is_a_usage_error(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "x"}])
    r = cli("batch", str(jobs), "-o", str(tmp_path / "o"), "--model", DEV, "--emulator",
            "--max-spend", "-3", key=None)  # fmt: skip
    assert r.returncode == 2
    assert "--max-spend" in r.stderr and "allowed" in r.stderr
    r = cli("batch", str(jobs), "-o", str(tmp_path / "o"), "--model", DEV, "--emulator",
            "--budget-name", "x", key=None)  # fmt: skip
    assert r.returncode == 2 and "--budget-name: needs --share" in r.stderr
