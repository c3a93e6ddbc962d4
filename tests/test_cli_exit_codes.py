"""One exit-code table for every command, and what each command says when it ends.

0 ok · 1 some jobs failed · 2 usage or configuration (a refused key or account included)
· 130 SIGINT · 143 SIGTERM · 141 the output's reader went away. Driven as a user would:
the console script in a subprocess, against emulators in other processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.test_cli import (
    CANARY,
    DEV,
    PRO,
    REPO,
    _env,
    cli,
    cli_cmd,
    emulator_process,
    popen,
    write_jobs,
)

pytestmark = pytest.mark.e2e

GOOD: Final = CANARY
BAD: Final = "wsk-refused-0000"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """``(keyed, broke)``: one accepts only GOOD (401 otherwise); one refuses submits (403)."""
    with (
        emulator_process("--api-key", GOOD) as keyed,
        emulator_process("--enforce-balance", "--initial-balance", "0") as broke,
    ):
        yield keyed, broke


def _no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    assert CANARY not in r.stdout + r.stderr


def test_a_refused_key_exits_2_in_every_command(servers: tuple[str, str], tmp_path: Path) -> None:
    url, _ = servers
    lines = [{"model": PRO, "prompt": f"p{i}"} for i in range(3)]
    jobs = write_jobs(tmp_path / "jobs.jsonl", lines)
    for args in (
        ("run", PRO, "--prompt", "x", "-o", str(tmp_path / "run")),
        ("get", "0" * 32),
        ("balance",),
        ("batch", str(jobs), "-o", str(tmp_path / "batch")),
    ):
        r = cli(*args, "--base-url", url, key=BAD)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "refused" in r.stderr and "WAVESPEED_API_KEY" in r.stderr, args
        _no_traceback(r)
    # The batch does not advise running it again as it is: the key must change first.
    assert "Re-run the same command to finish" not in r.stdout
    assert "Fix that first" in r.stdout


def test_a_refused_account_exits_2(servers: tuple[str, str], tmp_path: Path) -> None:
    _, url = servers
    r = cli("run", PRO, "--prompt", "x", "-o", str(tmp_path), "--base-url", url, key=GOOD)
    assert r.returncode == 2, r.stderr
    assert "refused this account" in r.stderr
    _no_traceback(r)


def test_ok_and_failed_jobs_exit_0_and_1(servers: tuple[str, str], tmp_path: Path) -> None:
    url, _ = servers
    fast = ("-o", str(tmp_path), "--emulator", "--emulator-latency", "fast")
    assert cli("run", PRO, "--prompt", "fine", *fast).returncode == 0
    failed = cli("run", PRO, "--prompt", "[fail:1200] no", *fast)
    assert failed.returncode == 1 and "1200" in failed.stderr
    _no_traceback(failed)
    # A failed task of a server, fetched by id: shown (0), waited for (1), saved (1).
    request = urllib.request.Request(  # noqa: S310 - http on 127.0.0.1
        f"{url}/api/v3/{PRO}",
        data=json.dumps({"prompt": "[fail:1200] no"}).encode(),
        headers={"Authorization": f"Bearer {GOOD}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        task_id = json.loads(answer.read())["data"]["id"]
    assert cli("get", task_id, "--base-url", url, key=GOOD).returncode == 0
    assert cli("get", task_id, "--wait", "--base-url", url, key=GOOD).returncode == 1
    saved = cli("get", task_id, "-o", str(tmp_path), "--base-url", url, key=GOOD)
    assert saved.returncode == 1 and "no outputs to save" in saved.stderr
    assert cli("balance", "--base-url", url, key=GOOD).returncode == 0
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"model": PRO, "prompt": "fine"}, {"model": PRO, "prompt": "[fail] no"}],
    )
    r = cli("batch", str(jobs), "-o", str(tmp_path / "b"), "-q", *fast[2:])
    assert r.returncode == 1, r.stderr
    _no_traceback(r)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (
        ("run", PRO, "--prompt", "x", "--set", "num_images=9", "--emulator"),
        ("run", DEV, "--prompt", "x", "--set", "size=1024x768", "--emulator"),
        ("get",),
        ("balance", "--emulator-latency", "fast", "--emulator"),
        ("emulator", "--latency", "slowest"),
        ("nonsense",),
    ):
        r = cli(*args, "-o", str(tmp_path)) if args[0] == "run" else cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        _no_traceback(r)
    r = cli("run", DEV, "--prompt", "x", "--set", "size=1024x768", "--emulator")
    assert 'write it "1024*768"' in r.stderr


def test_help_shows_each_command_its_own_options() -> None:
    emulator = cli("emulator", "--help")
    assert emulator.returncode == 0
    assert emulator.stdout.startswith("usage: wavespeed-async emulator")
    balance = cli("balance", "--help")
    assert balance.returncode == 0 and "--base-url" in balance.stdout
    assert "--timeout" in balance.stdout and "--emulator-latency" not in balance.stdout
    run = cli("run", "--help")
    assert "--timeout" in run.stdout and "--emulator-latency" in run.stdout


def test_misspelt_fields_are_refused_per_line_and_by_run_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"model": PRO, "prompt": "fine"}, {"model": PRO, "prompt": "x", "aspect_ration": "16:9"}],
    )
    r = cli("batch", str(jobs), "-o", str(tmp_path / "b"), "-q", "--emulator",
            "--emulator-latency", "fast")  # fmt: skip
    assert r.returncode == 1, r.stderr  # a line is invalid
    assert f"{jobs}:2: aspect_ration: not a field of {PRO} (did you mean 'aspect_ratio'?)" in (
        r.stderr
    )
    assert f"{jobs}:1:" not in r.stderr
    assert "UnknownFieldWarning" not in r.stderr  # the CLI's own report, not Python's
    lines = (tmp_path / "b" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["completed", "invalid"]
    r = cli("run", PRO, "--prompt", "x", "--set", "aspect_ration=16:9", "-o", str(tmp_path),
            "--emulator", "--emulator-latency", "fast")  # fmt: skip
    assert r.returncode == 2, r.stderr  # bad inputs: nothing was sent
    assert r.stderr.count("error: aspect_ration: not a field of") == 1
    assert "created" not in r.stderr  # no task
    assert "UnknownFieldWarning" not in r.stderr


def _run_then_signal(url: str, sig: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = popen("run", PRO, "--prompt", "slow [latency:30000]", "-o", str(tmp_path),
                 "--base-url", url, key=GOOD)  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "task ID created": the task exists, the wait is on
    assert "created" in line, (line, proc.communicate(timeout=10))
    proc.send_signal(sig)
    out, rest = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, line + rest)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_exit_128_plus_the_signal_and_name_the_running_task(
    servers: tuple[str, str], tmp_path: Path, sig: int, code: int
) -> None:
    url, _ = servers
    r = _run_then_signal(url, sig, tmp_path)
    assert r.returncode == code, r.stderr
    task_id = r.stderr.split()[1]
    assert f"wavespeed-async get {task_id} --wait" in r.stderr
    _no_traceback(r)


def test_a_closed_pipe_ends_quietly(servers: tuple[str, str], tmp_path: Path) -> None:
    url, _ = servers
    made = cli("run", PRO, "--prompt", "for get", "--json", "-o", str(tmp_path), "--base-url",
               url, key=GOOD)  # fmt: skip
    task_id = json.loads(made.stdout)["id"]
    # The reader is gone before anything is written (as after `| head -c 1` has exited).
    proc = subprocess.Popen(
        [*cli_cmd("get", task_id, "--base-url", url)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(WAVESPEED_API_KEY=GOOD),
        cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    started = time.monotonic()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 141
    assert err == "", err
    assert time.monotonic() - started < 30


def test_run_refuses_an_output_path_that_is_a_file_before_any_task_exists(
    tmp_path: Path,
) -> None:
    taken = tmp_path / "afile"
    taken.write_text("not a folder")
    r = cli("run", PRO, "--prompt", "x", "-o", str(taken), "--emulator",
            "--emulator-latency", "fast")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert f"-o {taken}: is a file; allowed: a folder" in r.stderr
    assert "task " not in r.stderr  # no task was created, none paid for
    _no_traceback(r)
    # Before any request: nothing listens at that address.
    r = cli("get", "0" * 32, "-o", str(taken), "--base-url", "http://127.0.0.1:9", key=GOOD)
    assert r.returncode == 2 and f"-o {taken}: is a file" in r.stderr, r.stderr
    _no_traceback(r)


def test_run_uploads_only_an_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    r = cli("run", "wavespeed-ai/flux-kontext-dev", "--prompt", "x", "--image", str(text),
            "-o", str(tmp_path / "o"), "--emulator", "--emulator-latency", "fast")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--image: " in r.stderr and "is not an image" in r.stderr
    assert "task " not in r.stderr
    _no_traceback(r)
