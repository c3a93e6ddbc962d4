"""The batch's journal writes, made off the event loop, still come first.

The batch runs in this process against an emulator served with no socket; the journal's
committed state is read through a second connection (in WAL mode it sees only what was
committed), at the moment a submit reaches the emulator and whenever the progress
counts a job as submitted or completed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fast_poll
from tests.test_cli import CANARY, PRO, manifest, write_jobs
from wavespeed_async import Client, FlowLimits
from wavespeed_async._http.base import HTTPRequest, HTTPResponse
from wavespeed_async.cli import _parser, _runner
from wavespeed_async.cli._progress import Counters
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.jobs.journal import Journal

JOBS = 24


def committed_rows(path: Path) -> dict[int, tuple[str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT line, state, task_id FROM jobs").fetchall()
    finally:
        conn.close()
    return {int(line): (str(state), task_id) for line, state, task_id in rows}


class Spy:
    """The emulator's transport, noting the journal's committed state at each submit."""

    def __init__(self, inner: Any, journal_path: Path) -> None:
        self.inner = inner
        self.path = journal_path
        #: line -> its committed state when its submit reached the emulator.
        self.at_submit: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        if request.method == "POST" and f"/api/v3/{PRO}" in request.url and request.body:
            prompt = json.loads(request.body)["prompt"]
            line = int(prompt.split()[1]) + 1
            self.at_submit[line] = committed_rows(self.path)[line][0]
        response: HTTPResponse = await self.inner.send(request, max_bytes=max_bytes)
        return response


def run_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, Spy]:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"job {i}"} for i in range(JOBS)])
    out = tmp_path / "out"
    spies: list[Spy] = []

    @asynccontextmanager
    async def in_process(target: Any, **kwargs: Any) -> AsyncIterator[Client]:
        config = EmulatorConfig(seed=3, latency=LatencyProfile.fast())
        async with Emulator(config, port=None) as emu:
            spy = Spy(emu.transport(), out / "journal.sqlite3")
            spies.append(spy)
            async with Client(
                CANARY,
                base_url=emu.base_url,
                transport=spy,
                poll=fast_poll(),
                limits=kwargs.get("limits")
                or FlowLimits(max_in_flight=None, max_tasks_per_minute=None),
            ) as client:
                yield client

    monkeypatch.setattr(_runner, "open_client", in_process)
    argv = ["batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator", "--quiet"]
    args: argparse.Namespace = _parser().parse_args([*argv, "--no-gallery", *extra])
    code: int = args.func(args)
    return code, spies[0]


def test_each_intent_is_committed_before_its_submit_reaches_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, spy = run_batch(tmp_path, monkeypatch, "--concurrency", "8")
    assert code == 0
    assert spy.at_submit == dict.fromkeys(range(1, JOBS + 1), "submitting")
    assert {e["status"] for e in manifest(tmp_path / "out")} == {"completed"}


def test_the_progress_never_counts_a_job_before_its_record_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out" / "journal.sqlite3"
    checks: list[tuple[str, int, int]] = []

    class Checked(Counters):
        """Counters that compare each new count with what the journal has committed."""

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("submitted", "completed") and value > getattr(self, name, 0):
                rows = committed_rows(path).values()
                if name == "submitted":
                    durable = sum(1 for _, task_id in rows if task_id is not None)
                else:
                    durable = sum(1 for state, _ in rows if state == "completed")
                checks.append((name, value, durable))
            super().__setattr__(name, value)

    monkeypatch.setattr(_runner, "Counters", Checked)
    code, _ = run_batch(tmp_path, monkeypatch, "--concurrency", "8")
    assert code == 0
    assert sorted(n for n, _, _ in checks) == ["completed"] * JOBS + ["submitted"] * JOBS
    assert [c for c in checks if c[1] > c[2]] == []


def test_a_journal_write_failing_in_its_thread_stops_the_batch_and_prints_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    created = Journal.mark_created
    calls = 0

    def full_after_four(self: Journal, line: int, task_id: str) -> None:
        nonlocal calls
        calls += 1
        if calls > 4:
            raise sqlite3.OperationalError("database or disk is full")
        created(self, line, task_id)

    monkeypatch.setattr(Journal, "mark_created", full_after_four)
    code, spy = run_batch(tmp_path, monkeypatch, "--concurrency", "2")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: the batch stopped: cannot write the journal" in err
    assert "database or disk is full" in err
    entries = manifest(tmp_path / "out")
    recorded = {e["task_id"] for e in entries if e["task_id"]}
    printed = {
        word
        for text in err.splitlines()
        if "was created but could not be journaled" in text
        for word in text.split()[3:4]
    }
    assert len(recorded) == 4
    assert printed
    assert not recorded & printed
    # Every submit that reached the server is recorded or printed.
    assert len(spy.at_submit) == len(recorded | printed)
