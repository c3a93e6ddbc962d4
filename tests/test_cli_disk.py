"""The batch command when the disk, the output folder or the file limit say no.

A full disk is real here: the console script runs with a file-size limit
(``RLIMIT_FSIZE``), so SQLite's own writes fail with "database or disk is full".
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Final

import anyio
import pytest

from tests.test_cli import CANARY, PRO, REPO, _env, cli, cli_cmd, manifest, write_jobs
from wavespeed_async._runtime.fdlimit import connections_allowed
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.jobs.journal import Journal, JournalError, JournalWriteError

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

#: Runs the rest of argv with the soft limit of one resource lowered.
LIMITED: Final = (
    "import os, resource, sys; "
    "which = getattr(resource, sys.argv[1]); soft, hard = resource.getrlimit(which); "
    "resource.setrlimit(which, (int(sys.argv[2]), hard)); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def limited(resource_name: str, soft: int, cmd: list[str]) -> list[str]:
    return [sys.executable, "-c", LIMITED, resource_name, str(soft), *cmd]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
async def test_a_full_disk_stops_the_batch_cleanly_and_loses_no_task_id(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"job {i}"} for i in range(40)])
    out = tmp_path / "out"
    async with Emulator(EmulatorConfig(seed=9, latency=LatencyProfile.fast())) as emu:
        cmd = cli_cmd(
            "batch", str(jobs), "-o", str(out), "--model", PRO, "--base-url", emu.base_url,
            "--concurrency", "4",
        )  # fmt: skip
        # Planning 40 jobs takes ~370 KB of write-ahead log; running each ~20 KB more.
        done = await anyio.run_process(
            limited("RLIMIT_FSIZE", 512 * 1024, cmd),
            check=False,
            env=_env(WAVESPEED_API_KEY=CANARY),
            cwd=REPO,
        )
        created = set(emu.stats().tasks)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert "error: the batch stopped: cannot write the journal" in err
    assert re.search(r"database or disk is full|disk I/O error", err), err
    # The manifest is written from what the journal holds; every task the server created
    # is either in it or printed.
    entries = manifest(out)
    assert [e["line"] for e in entries] == list(range(1, 41))
    recorded = {e["task_id"] for e in entries if e["task_id"]}
    printed = set(re.findall(r"task ([0-9a-f]+) was created but could not be journaled", err))
    assert 0 < len(recorded) < 40
    assert created == recorded | printed
    assert CANARY not in err + done.stdout.decode()


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "x"}])
    (tmp_path / "taken").write_text("a file\n")
    for target in (tmp_path / "taken", tmp_path / "taken" / "below"):
        r = cli("batch", str(jobs), "-o", str(target), "--model", PRO, "--emulator", key=CANARY)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert f"error: -o {target}:" in r.stderr


@pytest.mark.skipif(
    not os.path.isdir("/sys/kernel")
    or (os.access("/sys/kernel", os.W_OK | os.X_OK) and os.getuid() != 0),
    reason="needs a folder this process cannot create files in",
)
def test_an_output_folder_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    # sysfs refuses new files even to root, so this works whoever runs the tests.
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": "x"}])
    r = cli("batch", str(jobs), "-o", "/sys/kernel", "--model", PRO, "--emulator", key=CANARY)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "error: -o /sys/kernel: cannot write there:" in r.stderr


def test_a_full_journal_raises_a_write_error_naming_the_cause(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        journal.ensure(1, "h1", PRO)
        journal.mark_submitting(1, {"prompt": "x"})
        journal.mark_created(1, "a" * 32)
        # SQLite's own page cap: the next pages cannot be allocated, as on a full disk.
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalWriteError, match="database or disk is full") as caught:
            for line in range(2, 10_000):
                journal.ensure(line, f"h{line}", PRO)
                journal.mark_submitting(line, {"prompt": "y" * 2000})
        assert str(tmp_path / "journal.sqlite3") in str(caught.value)
        assert isinstance(caught.value, JournalError)
        # What was committed before stays readable.
        rec = journal.get(1)
        assert rec is not None and rec.task_id == "a" * 32


@pytest.mark.parametrize(
    ("soft", "requested", "allowed"),
    [
        (None, 100, 100),  # no limit
        (1_048_576, 100, 100),
        (1024, 100, 100),  # (1024 - 256) // 2 = 384
        (256, 100, 96),  # (256 - 64) // 2
        (64, 100, 16),  # (64 - 32) // 2
        (64, 8, 8),
        (20, 100, 1),  # never below one
    ],
)
def test_the_pool_size_leaves_headroom_under_the_file_limit(
    soft: int | None, requested: int, allowed: int
) -> None:
    assert connections_allowed(requested, soft) == allowed


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
async def test_a_batch_within_a_small_file_limit_completes(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"job {i}"} for i in range(96)])
    out = tmp_path / "out"
    async with Emulator(EmulatorConfig(seed=4, latency=LatencyProfile.fast())) as emu:
        cmd = cli_cmd(
            "batch", str(jobs), "-o", str(out), "--model", PRO, "--base-url", emu.base_url,
            "--concurrency", "96",
        )  # fmt: skip
        done = await anyio.run_process(
            limited("RLIMIT_NOFILE", 64, cmd),
            check=False,
            env=_env(WAVESPEED_API_KEY=CANARY),
            cwd=REPO,
        )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "max_connections lowered from 100 to 16" in err
    assert {e["status"] for e in manifest(out)} == {"completed"}


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
async def test_too_many_open_files_is_reported_as_itself(tmp_path: Path) -> None:
    # Limits so small that something runs out of files: where depends on the limit.
    # Wherever it happens, it is named, and never a traceback.
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"job {i}"} for i in range(3)])
    codes: list[int] = []
    async with Emulator(EmulatorConfig(seed=4, latency=LatencyProfile.fast())) as emu:
        for soft in range(10, 14):
            out = tmp_path / f"out{soft}"
            cmd = cli_cmd(
                "batch", str(jobs), "-o", str(out), "--model", PRO, "--base-url", emu.base_url,
                "-q",
            )  # fmt: skip
            done = await anyio.run_process(
                limited("RLIMIT_NOFILE", soft, cmd),
                check=False,
                env=_env(WAVESPEED_API_KEY=CANARY),
                cwd=REPO,
            )
            err = done.stderr.decode()
            assert "Traceback" not in err, (soft, err)
            codes.append(done.returncode)
            if done.returncode == 0:
                continue
            if done.returncode == 2:  # the batch could not go on: said on stderr
                assert "error: " in err and "Too many open files" in err, (soft, err)
            else:  # some jobs failed for it: each one's error is in the manifest
                assert done.returncode == 1, (soft, done.returncode, err)
                manifest = (out / "results.jsonl").read_text()
                assert "Too many open files" in manifest, (soft, manifest)
    assert set(codes) - {0}, codes
