"""The ``wavespeed-async`` command line, driven as a user would: in a subprocess.

Every test runs the real console script (``python -m wavespeed_async.cli``) against the
emulator: in-process (``--emulator``), or in another process (``python -m
wavespeed_async.emulator``) whose statistics, read over HTTP, prove that no task was
submitted twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Final

import pytest

from wavespeed_async.cli._jobs import parse_jobs
from wavespeed_async.jobs.journal import Journal

pytestmark = pytest.mark.e2e

REPO: Final = Path(__file__).resolve().parents[1]
PRO: Final = "wavespeed-ai/flux-kontext-pro/text-to-image"
DEV: Final = "wavespeed-ai/flux-kontext-dev"
#: A key that must never appear in any output, journal or manifest.
CANARY: Final = "wsk-cli-canary-5e4d3c2b1a09"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "WAVESPEED_BASE_URL")
    }
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "wavespeed_async.cli", *args]


def cli(
    *args: str, key: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = _env(WAVESPEED_API_KEY=key) if key is not None else _env()
    return subprocess.run(
        cli_cmd(*args), capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout
    )


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT, as Ctrl-C would.

    A command started in the background by a non-interactive shell (``cmd &`` in a script)
    ignores SIGINT, and so does everything it starts: run that way, pytest would hand the
    ignored signal on, and a CLI that rightly keeps ignoring it would never see the test's
    Ctrl-C. The child gets SIGINT's default back, as in a terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(*args: str, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(WAVESPEED_API_KEY=key),
        cwd=REPO,
        preexec_fn=as_in_a_terminal,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def write_jobs(path: Path, jobs: Sequence[dict[str, Any] | str]) -> Path:
    lines = [j if isinstance(j, str) else json.dumps(j) for j in jobs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def manifest(out: Path) -> list[dict[str, Any]]:
    text = (out / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def journal_rows(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, state, task_id)`` rows, read as another process would (read-only)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute("SELECT line, state, task_id FROM jobs ORDER BY line").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    return [(int(a), str(b), c) for a, b, c in rows]


def wait_for(
    path: Path,
    ready: Callable[[list[tuple[int, str, str | None]]], bool],
    proc: subprocess.Popen[str],
    timeout: float = 20,
) -> list[tuple[int, str, str | None]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[int, str, str | None]] = []
    while time.monotonic() < deadline:
        rows = journal_rows(path)
        if rows and ready(rows):
            return rows
        assert proc.poll() is None, f"the batch ended early: {finish(proc)}"
        time.sleep(0.03)
    proc.kill()
    raise AssertionError(f"journal never got ready: {rows}; {finish(proc)}")


def states(rows: list[tuple[int, str, str | None]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, state, _ in rows:
        out[state] = out.get(state, 0) + 1
    return out


def check_png(path: Path) -> tuple[int, int]:
    """Check a PNG file thoroughly (signature, chunk CRCs, pixel data); return its size."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, size, ended = 8, b"", (0, 0), False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + chunk) & 0xFFFFFFFF == crc, path
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert (depth, colour) == (8, 2)
            size = (width, height)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            ended = True
            break
        pos += 12 + length
    assert ended, path
    assert len(zlib.decompress(idat)) == size[1] * (1 + 3 * size[0]), path
    return size


# -- an emulator in another process -----------------------------------------------------


@contextlib.contextmanager
def emulator_process(*options: str) -> Iterator[str]:
    """``python -m wavespeed_async.emulator`` on a free port, with ``options``; its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wavespeed_async.emulator",
            "--port",
            "0",
            "--latency",
            "fast",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        cwd=REPO,
        preexec_fn=as_in_a_terminal,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """An emulator in another process; yields its base URL."""
    with emulator_process() as url:
        yield url


def stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_emulator/stats", timeout=10) as r:  # noqa: S310
        data: dict[str, Any] = json.loads(r.read())
    return data


def tasks_for(base: str, tag: str) -> dict[str, str]:
    """The emulator's tasks whose prompt carries ``tag``: ``{task id: prompt}``."""
    return {tid: t["prompt"] for tid, t in stats(base)["tasks"].items() if tag in t["prompt"]}


def tagged(tag: str, latencies: list[int]) -> list[dict[str, Any]]:
    return [
        {"model": PRO, "prompt": f"{tag} job {i} [latency:{ms}]"}
        for i, ms in enumerate(latencies, start=1)
    ]


# -- the quick start --------------------------------------------------------------------


def test_quick_start_batch_of_examples_makes_pngs_and_manifest(tmp_path: Path) -> None:
    """The README's first command, as written (minus the install): no key, no network."""
    out = tmp_path / "out"
    started = time.monotonic()
    r = cli("batch", "examples/jobs.jsonl", "-o", str(out), "--emulator")
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert elapsed < 30
    jobs = [
        json.loads(line)
        for line in (REPO / "examples" / "jobs.jsonl").read_text().splitlines()
        if line.strip()
    ]
    entries = manifest(out)
    assert [e["line"] for e in entries] == list(range(1, len(jobs) + 1))
    assert all(e["status"] == "completed" for e in entries)
    assert len({e["task_id"] for e in entries}) == len(jobs)
    assert any(j["model"] == DEV and j["image"].startswith("images/") for j in jobs)
    for job, e in zip(jobs, entries, strict=True):
        assert len(e["outputs"]) == job.get("num_images", 1)
        assert e["error"] is None and e["timings"]["inference_ms"] > 0
        for k, name in enumerate(e["outputs"]):
            assert name == f"line{e['line']:05d}_{e['task_id']}_{k}.png"
            width, height = check_png(out / name)
            assert width * height > 500_000
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == sum(len(e["outputs"]) for e in entries)
    assert "manifest" in r.stdout and str(out / "results.jsonl") in r.stdout
    assert not (out / ".partial").exists()


# -- nothing lost ------------------------------------------------------------------------


def test_kill9_mid_run_then_rerun_gives_one_task_per_line(tmp_path: Path, server: str) -> None:
    tag = f"k9-{uuid.uuid4().hex[:8]}"
    # Two quick jobs end first; then four slow ones run while the kill lands; two wait.
    jobs = write_jobs(tmp_path / "jobs.jsonl", tagged(tag, [300, 300] + [4000] * 4 + [300] * 2))
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--base-url", server, "--concurrency", "4")
    proc = popen(*args, key=CANARY)
    rows = wait_for(
        out / "journal.sqlite3",
        lambda rows: (
            states(rows).get("completed", 0) >= 2
            and states(rows).get("created", 0) >= 4
            and "submitting" not in states(rows)
        ),
        proc,
    )
    proc.send_signal(signal.SIGKILL)
    code, _, _ = finish(proc)
    assert code == -signal.SIGKILL
    # Every task the server created before the kill is in the journal.
    rows = journal_rows(out / "journal.sqlite3")
    on_server = tasks_for(server, tag)
    assert set(on_server) == {tid for _, _, tid in rows if tid}
    assert "pending" in states(rows)

    code, out_text, err_text = finish(popen(*args, key=CANARY))
    assert code == 0, err_text
    entries = manifest(out)
    assert [e["line"] for e in entries] == list(range(1, 9))
    assert all(e["status"] == "completed" and len(e["outputs"]) == 1 for e in entries)
    on_server = tasks_for(server, tag)
    assert len(on_server) == 8  # no task submitted twice
    assert len(set(on_server.values())) == 8  # one task per line's prompt
    assert {e["task_id"] for e in entries} == set(on_server)
    assert all(n == 1 for p, n in stats(server)["tasks_per_prompt"].items() if tag in p)
    assert "4 collected from an earlier run" in out_text

    # A third run has nothing left to do and creates no task.
    r = cli(*args, key=CANARY)
    assert r.returncode == 0, r.stderr
    assert "0 submitted" in r.stdout and "8 skipped" in r.stdout
    assert len(tasks_for(server, tag)) == 8
    assert manifest(out) == entries
    # The key is in no output, journal or manifest.
    for blob in (out_text, err_text, r.stdout, r.stderr):
        assert CANARY not in blob
    for f in out.iterdir():
        assert CANARY.encode() not in f.read_bytes()


def test_sigint_exits_130_with_every_task_id_in_the_journal(tmp_path: Path, server: str) -> None:
    tag = f"int-{uuid.uuid4().hex[:8]}"
    jobs = write_jobs(tmp_path / "jobs.jsonl", tagged(tag, [2500] * 6))
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--base-url", server, "--concurrency", "3")
    proc = popen(*args, "--grace", "0.3", key="k")
    wait_for(
        out / "journal.sqlite3",
        lambda rows: states(rows).get("created", 0) == 3 and "submitting" not in states(rows),
        proc,
    )
    proc.send_signal(signal.SIGINT)
    code, _, err_text = finish(proc, timeout=10)
    assert code == 130, err_text
    assert "interrupted" in err_text
    rows = journal_rows(out / "journal.sqlite3")
    assert states(rows) == {"created": 3, "pending": 3}
    assert {tid for _, _, tid in rows if tid} == set(tasks_for(server, tag))
    assert [e["status"] for e in manifest(out)] == ["incomplete"] * 3 + ["not_submitted"] * 3

    # Resuming collects the three tasks (no re-submit) and runs the other three.
    r = cli(*args, key="k")
    assert r.returncode == 0, r.stderr
    assert all(e["status"] == "completed" for e in manifest(out))
    assert len(tasks_for(server, tag)) == 6


def test_unknown_submit_outcome_is_held_until_resubmit_flag(tmp_path: Path, server: str) -> None:
    tag = f"unk-{uuid.uuid4().hex[:8]}"
    jobs = write_jobs(tmp_path / "jobs.jsonl", tagged(tag, [10, 10]))
    out = tmp_path / "out"
    # A process that died between recording its intent and hearing back about line 1.
    parsed = parse_jobs(jobs.read_text(), default_model=None, base=tmp_path)
    with Journal.open(out / "journal.sqlite3") as j:
        j.ensure(1, parsed[0].hash, PRO)
        j.mark_submitting(1, parsed[0].inputs)
    args = ("batch", str(jobs), "-o", str(out), "--base-url", server)
    r = cli(*args, key="k")
    assert r.returncode == 1
    assert "line(s) 1" in r.stderr and "--resubmit-unknown" in r.stderr
    assert [e["status"] for e in manifest(out)] == ["unknown", "completed"]
    assert list(tasks_for(server, tag).values()) == [f"{tag} job 2 [latency:10]"]

    r = cli(*args, "--resubmit-unknown", key="k")
    assert r.returncode == 0, r.stderr
    assert [e["status"] for e in manifest(out)] == ["completed", "completed"]
    assert len(tasks_for(server, tag)) == 2


def test_resume_skips_finished_jobs(tmp_path: Path) -> None:
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [{"prompt": "a red kite"}, {"prompt": "a blue kite", "num_images": 2}],
    )
    out = tmp_path / "out"
    args = ("batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator")
    r = cli(*args, "--emulator-latency", "fast")
    assert r.returncode == 0, r.stderr
    first = manifest(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert len(mtimes) == 3

    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "0 submitted" in r.stdout and "2 skipped" in r.stdout
    assert manifest(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes


def test_edited_jobs_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    write_jobs(path, [{"prompt": "one"}, {"prompt": "two"}])
    out = tmp_path / "out"
    args = ("batch", str(path), "-o", str(out), "--model", PRO, "--emulator")
    assert cli(*args, "--emulator-latency", "fast").returncode == 0
    before = manifest(out)

    write_jobs(path, [{"prompt": "one"}, {"prompt": "two, edited"}])
    r = cli(*args, "--emulator-latency", "fast")
    assert r.returncode == 2
    assert "line(s) 2" in r.stderr and "--rerun-changed" in r.stderr

    r = cli(*args, "--emulator-latency", "fast", "--rerun-changed")
    assert r.returncode == 0, r.stderr
    after = manifest(out)
    assert after[0] == before[0]
    assert after[1]["status"] == "completed" and after[1]["task_id"] != before[1]["task_id"]


# -- bad input, bad configuration --------------------------------------------------------


def test_bad_lines_get_their_line_number_and_the_others_run(tmp_path: Path) -> None:
    shutil.copy(REPO / "examples" / "images" / "cottage.png", tmp_path / "in.png")
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"prompt": "good one"},
            '{"prompt": "broken",',
            "",
            '["not", "an", "object"]',
            {"model": DEV, "prompt": "edit it", "image": "in.png"},
            {"prompt": "bad ratio", "aspect_ratio": "5:4"},
            {"model": DEV, "prompt": "missing file", "image": "nope.png"},
            {"prompt": "fails on the server [fail:1403]"},
        ],
    )
    out = tmp_path / "out"
    r = cli(
        "batch", str(jobs), "-o", str(out), "--model", PRO, "--emulator",
        "--emulator-latency", "fast",
    )  # fmt: skip
    assert r.returncode == 1
    name = str(jobs)
    assert f"{name}:2: not valid JSON" in r.stderr
    assert f"{name}:4: expected a JSON object" in r.stderr
    assert f"{name}:6: aspect_ratio" in r.stderr
    assert f"{name}:7: image: no such file 'nope.png'" in r.stderr
    entries = {e["line"]: e for e in manifest(out)}
    assert sorted(entries) == [1, 2, 4, 5, 6, 7, 8]  # the blank line is not a job
    assert {n: e["status"] for n, e in entries.items()} == {
        1: "completed", 2: "invalid", 4: "invalid", 5: "completed", 6: "invalid",
        7: "invalid", 8: "failed",
    }  # fmt: skip
    assert "not valid JSON" in entries[2]["error"]
    assert entries[8]["code"] == 1403 and entries[8]["task_id"]
    check_png(out / entries[5]["outputs"][0])  # the local image was uploaded, then edited
    assert "line     2  invalid" in r.stdout


def test_missing_key_says_what_to_do(tmp_path: Path) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", [{"model": PRO, "prompt": "x"}])
    for args in (
        ("batch", str(jobs), "-o", str(tmp_path / "out")),
        ("run", PRO, "--prompt", "x", "-o", str(tmp_path / "out")),
        ("balance",),
    ):
        r = cli(*args)
        assert r.returncode == 2, args
        assert "WAVESPEED_API_KEY" in r.stderr and "--emulator" in r.stderr
        # A standalone emulator needs its address as well as a key.
        assert "WAVESPEED_BASE_URL" in r.stderr and "wavespeed-async emulator" in r.stderr
    assert not (tmp_path / "out").exists()
    r = cli("batch", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "out"), "--emulator")
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = cli("batch", str(jobs), "-o", str(tmp_path / "o"), "--emulator", "--concurrency", "0")
    assert r.returncode == 2 and "--concurrency" in r.stderr


# -- the other commands ------------------------------------------------------------------


def test_run_single_generation_writes_pngs(tmp_path: Path) -> None:
    r = cli(
        "run", PRO, "--prompt", "a lighthouse at dusk", "--set", "aspect_ratio=16:9",
        "--set", "num_images=2", "-o", str(tmp_path), "--emulator", "--emulator-latency", "fast",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "status     completed" in r.stdout and "inference" in r.stdout
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 2
    assert all(check_png(f) == (1344, 768) for f in files)
    task_id = r.stdout.split()[1]
    assert files[0].name == f"{task_id}_0.png"
    assert f"task {task_id} created" in r.stderr


def test_get_and_balance(tmp_path: Path, server: str) -> None:
    r = cli("run", DEV, "--prompt", "make it blue", "--image",
            str(REPO / "examples" / "images" / "cottage.png"), "--base-url", server,
            "-o", str(tmp_path / "run"), key=CANARY)  # fmt: skip
    assert r.returncode == 0, r.stderr
    task_id = r.stdout.split()[1]
    r2 = cli("get", task_id, "-o", str(tmp_path / "got"), "--base-url", server, key=CANARY)
    assert r2.returncode == 0, r2.stderr
    pred = json.loads(r2.stdout)
    assert pred["id"] == task_id and pred["status"] == "completed"
    check_png(tmp_path / "got" / f"{task_id}_0.png")
    r3 = cli("balance", "--base-url", server, key=CANARY)
    assert r3.returncode == 0 and r3.stdout.strip().endswith("USD")
    r4 = cli("get", "0" * 32, "--base-url", server, key=CANARY)
    assert r4.returncode == 2 and "404" in r4.stderr  # an id the server does not know
    for blob in (r.stdout, r.stderr, r2.stdout, r2.stderr, r3.stdout, r4.stderr):
        assert CANARY not in blob


# -- the journal on its own ---------------------------------------------------------------


def test_journal_states_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal.open(path) as j:
        assert j.ensure(1, "h1", PRO).state == "pending"
        j.ensure(2, "h2", PRO)
        j.mark_submitting(1, {"prompt": "p"})
        j.mark_created(1, "t1")
        j.mark_submitting(2, {"prompt": "q"})
        j.mark_invalid(3, "h3", "not valid JSON")
    with Journal.open(path) as j:
        one, two, three = j.all()
        assert (one.state, one.task_id, one.body, one.attempts) == (
            "created",
            "t1",
            {"prompt": "p"},
            1,
        )
        assert two.state == "submitting" and two.submitted_at is not None
        assert (three.state, three.error) == ("invalid", "not valid JSON")
        assert j.submitting_to_unknown("lost") == [2]
        j.mark_completed(1, ["a.png"], inference_ms=12.0)
        assert j.counts() == {"completed": 1, "unknown": 1, "invalid": 1}
        assert j.get(1) is not None and j.get(1).finished  # type: ignore[union-attr]
        with pytest.raises(Exception, match="different job"):
            j.ensure(1, "other", PRO)
        mode = j._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
