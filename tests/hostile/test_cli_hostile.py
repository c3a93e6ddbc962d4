"""The command line against a hostile server: a clear message and an exit code, never a traceback.

Nothing is written outside the output folder, on every run and re-run.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from tests.hostile.server import HostileServer
from tests.test_cli import CANARY, cli, journal_rows, manifest, write_jobs

pytestmark = pytest.mark.e2e

MODEL = "wavespeed-ai/flux-kontext-dev"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def clean(r: subprocess.CompletedProcess[str]) -> None:
    """Exited by itself with a message, without a traceback or the key."""
    assert r.returncode in (0, 1, 2), r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert CANARY not in r.stdout + r.stderr


@pytest.mark.parametrize("answer", ["bad_utf8_200", "deep_500", "id_dotdot", "id_nul"])
def test_run_with_an_undecodable_submit_answer_says_the_outcome_is_unknown(
    hostile: HostileServer, tmp_path: Path, answer: str
) -> None:
    hostile.submit = answer
    r = cli("run", MODEL, "--prompt", "x", "-o", str(tmp_path / "out"), "--base-url",
            hostile.url, key=CANARY)  # fmt: skip
    clean(r)
    assert r.returncode == 1
    assert "may or may not have been created" in r.stderr
    assert "\x00" not in r.stderr and "\x1b" not in r.stderr
    assert tree(tmp_path) == ["out"]  # the folder, checked before the submit; nothing in it


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "a\x1b[2Jb", "a" * 5000])
def test_get_refuses_a_hostile_id_before_any_request(
    hostile: HostileServer, tmp_path: Path, bad: str
) -> None:
    r = cli("get", bad, "-o", str(tmp_path), "--base-url", hostile.url, key=CANARY)
    clean(r)
    assert r.returncode == 2 and "is not a task id" in r.stderr  # a bad input
    assert "\x1b" not in r.stderr
    assert sum(hostile.hits.values()) == 0


@pytest.mark.parametrize("answer", ["bad_utf8_400", "deep_400"])
def test_get_with_an_undecodable_answer_is_a_clean_error(
    hostile: HostileServer, tmp_path: Path, answer: str
) -> None:
    hostile.result = answer
    r = cli("get", "0" * 32, "--base-url", hostile.url, key=CANARY)
    clean(r)
    assert r.returncode == 1 and "HTTP 400" in r.stderr


def test_batch_with_hostile_answers_and_a_hostile_journal_reruns_cleanly(
    hostile: HostileServer, tmp_path: Path
) -> None:
    hostile.outputs = [hostile.media("png.sh")]
    # The first task's result is undecodable; the others complete with a PNG served
    # under a ".sh" URL.
    hostile.result = lambda task_id: (
        "bad_utf8_400" if hostile.created and task_id == hostile.created[0] else "completed"
    )
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"prompt": str(i)} for i in range(3)])
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--model", MODEL, "--base-url", hostile.url,
            "--concurrency", "1")  # fmt: skip
    clean(cli(*args, key=CANARY))
    names = [n for n in tree(out) if n.endswith(".png")]
    assert len(names) == 2 and all("/" not in n for n in names)
    assert not any(n.endswith((".sh", ".part")) for n in tree(out))
    # An id that no checked answer could have produced lands in the journal (an older
    # version, or a hand edit): the re-run does not crash on it.
    with closing(sqlite3.connect(out / "journal.sqlite3")) as db, db:
        db.execute(
            "UPDATE jobs SET task_id = ?, state = 'created' WHERE line = 1", ("../../x\x00\x1b",)
        )
    r = cli(*args, key=CANARY)
    clean(r)
    assert "\x1b" not in r.stderr + r.stdout
    entries = manifest(out)
    assert len(entries) == 3
    assert entries[0]["status"] != "completed"
    assert sorted(tree(tmp_path)) == sorted(["jobs.jsonl", "out", *[f"out/{n}" for n in tree(out)]])
    assert len(journal_rows(out / "journal.sqlite3")) == 3


def test_get_prints_the_server_s_text_as_json_that_cannot_act_on_a_terminal(
    hostile: HostileServer,
) -> None:
    hostile.result = "terminal_tricks"
    r = cli("get", "0" * 32, "--base-url", hostile.url, key=CANARY)
    clean(r)
    for ch in ("\u202e", "\u2028", "\x7f", "\x1b"):
        assert ch not in r.stdout + r.stderr
    shown = json.loads(r.stdout)  # escaped, not dropped: the same values
    assert shown["model"] == "evil\u202emodel"
    assert shown["error"] == "line\u2028break\x7f \x1b[2J gone"
