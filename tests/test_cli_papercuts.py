"""What a new user of the command line trips on, driven through the real CLI in a subprocess.

Clear messages and the documented exit codes instead of tracebacks and surprises.
"""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Final

import pytest

from tests.test_cli import CANARY, PRO, REPO, _env, cli, cli_cmd, emulator_process, write_jobs
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


@pytest.fixture(scope="module")
def keyed() -> Iterator[str]:
    """An emulator in another process that takes only CANARY as a key (401 otherwise)."""
    with emulator_process("--api-key", CANARY) as url:
        yield url


def _create(base: str, prompt: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - http on 127.0.0.1
        f"{base}/api/v3/{PRO}",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Authorization": f"Bearer {CANARY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        task_id: str = json.loads(answer.read())["data"]["id"]
    return task_id


def test_balance_takes_timeout_as_docs_say_every_command_does() -> None:
    r = cli("balance", "--timeout", "5", "--emulator")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(" USD")


def test_get_of_an_unknown_id_is_a_bad_input_exit_2(server: str) -> None:
    for extra in ((), ("--wait",)):
        r = cli("get", "0" * 32, "--base-url", server, *extra, key=CANARY)
        assert r.returncode == 2, (extra, r.stderr)
        assert f"no task {'0' * 32} on this server" in r.stderr
        _no_traceback(r.stderr)
    r = cli("get", "not/an id", "--base-url", server, key=CANARY)
    assert r.returncode == 2 and "task_id" in r.stderr


def test_get_o_of_a_failed_task_says_it_has_no_outputs_and_of_a_running_one_to_wait(
    server: str, tmp_path: Path
) -> None:
    failed = _create(server, "[fail:1200] not allowed")
    r = cli("get", failed, "--wait", "-o", str(tmp_path), "--base-url", server, key=CANARY)
    assert r.returncode == 1
    assert f"task {failed} ended failed code 1200" in r.stderr
    assert "no outputs to save" in r.stderr and "yet" not in r.stderr
    running = _create(server, "slow [latency:30000]")
    r = cli("get", running, "-o", str(tmp_path), "--base-url", server, key=CANARY)
    assert r.returncode == 1
    assert "nothing to save yet; add --wait" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_get_with_emulator_is_refused_with_what_to_do_instead() -> None:
    r = cli("get", "0" * 32, "--emulator")
    assert r.returncode == 2
    assert "knows no task id" in r.stderr and "wavespeed-async emulator" in r.stderr
    assert "--base-url" in r.stderr
    _no_traceback(r.stderr)


def test_a_jobs_file_without_any_model_is_one_usage_error(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": f"p{i}"} for i in range(5)])
    r = cli("batch", str(jobs), "-o", str(tmp_path / "out"), *FAST)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "--model" in errors[0]
    assert not (tmp_path / "out").exists()
    # With --model, the same file runs.
    ok = cli("batch", str(jobs), "-o", str(tmp_path / "out"), "--model", PRO, "-q", *FAST)
    assert ok.returncode == 0, ok.stderr


def _mixed_jobs(tmp_path: Path) -> Path:
    return write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"model": PRO, "prompt": "fine"},
            {"model": PRO, "prompt": "also fine"},
            {"model": PRO, "prompt": "[fail:1200] no"},
            {"model": PRO, "prompt": "x", "num_images": 99},
        ],
    )


ENDED: Final = ("2 ok", "1 failed", "1 invalid")


def test_the_plain_progress_counts_an_invalid_line_as_invalid(tmp_path: Path) -> None:
    r = cli("batch", str(_mixed_jobs(tmp_path)), "-o", str(tmp_path / "out"), *FAST)
    assert r.returncode == 1, r.stderr
    [last] = [line for line in r.stderr.splitlines() if "ended (" in line][-1:]
    assert "4/4 ended (2 ok, 1 failed, 1 invalid)" in last
    assert " done" not in last
    assert "2 completed, 1 failed, 1 invalid" in r.stdout  # the summary's words


def test_the_progress_bar_on_a_terminal_uses_the_same_words(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    main, child = pty.openpty()
    env = {**_env(), "TERM": "xterm", "COLUMNS": "120"}
    args = ("batch", str(_mixed_jobs(tmp_path)), "-o", str(tmp_path / "out"), *FAST)
    proc = subprocess.Popen(
        cli_cmd(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child,
        env=env, cwd=REPO,
    )  # fmt: skip
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 1
    if proc.stdout is not None:
        proc.stdout.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    final = [line for line in text.replace("\r", "\n").splitlines() if "4/4" in line][-1]
    for words in ENDED:
        assert words in final, final
    assert "done" not in final


def test_after_a_refused_key_the_summary_does_not_advise_submitting_each_line(
    keyed: str, tmp_path: Path
) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl", [{"model": PRO, "prompt": f"p{i}"} for i in range(6)]
    )
    r = cli("batch", str(jobs), "-o", str(tmp_path / "out"), "--base-url", keyed, key="wrong")
    assert r.returncode == 2, r.stderr
    assert "re-run to submit it" not in r.stdout
    assert "Not submitted: line(s) 1, 2, 3, 4, 5, 6." in r.stdout
    assert "Fix that first" in r.stdout
