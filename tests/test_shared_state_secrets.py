"""Shared state and the output folder: no write redirected, no password shown.

A planted symbolic link never redirects a write, and a share's password shows nowhere
(pages, reprs, tracebacks' locals).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from tests.conftest import CANARY_KEY
from wavespeed_async import Client, LedgerError, ValidationError
from wavespeed_async.cli._common import Target, UsageError
from wavespeed_async.cli._gallery import command_line
from wavespeed_async.cli._outdir import (
    MANIFEST_NAME,
    PARTIAL_DIR,
    clear_partial,
    lock,
    partial_dir,
    write_manifest,
)
from wavespeed_async.gallery import GalleryItem, render_gallery
from wavespeed_async.jobs.journal import Journal, JournalError
from wavespeed_async.jobs.ledger import SqliteLedger

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-share-pw"


def share_url() -> str:
    """A share URL with a password (made by a call: no local of a test holds it)."""
    return f"redis://user:{PASSWORD}@127.0.0.1:6379/0"


def with_locals(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


# -- links planted in the output folder ------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file the user can write, outside the output folder: what a link points at."""
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def test_the_manifest_is_never_written_through_a_link_at_its_temporary_name(
    out: Path, victim: Path
) -> None:
    (out / f".{MANIFEST_NAME}.tmp").symlink_to(victim)
    write_manifest(out, [])
    assert victim.read_text() == "precious\n"
    assert (out / MANIFEST_NAME).is_file() and not (out / MANIFEST_NAME).is_symlink()


def test_a_manifest_that_is_a_link_is_replaced_not_followed(out: Path, victim: Path) -> None:
    (out / MANIFEST_NAME).symlink_to(victim)
    write_manifest(out, [])
    assert victim.read_text() == "precious\n"
    assert not (out / MANIFEST_NAME).is_symlink()


def test_a_lock_that_is_a_link_is_refused(out: Path, victim: Path) -> None:
    (out / ".lock").symlink_to(victim)
    with pytest.raises(UsageError, match="is a symbolic link"):
        lock(out)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("name", ["journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"])
def test_a_journal_file_that_is_a_link_is_refused(out: Path, victim: Path, name: str) -> None:
    (out / name).symlink_to(victim)
    with pytest.raises(JournalError, match="is a symbolic link"):
        Journal.open(out / "journal.sqlite3")
    assert victim.read_text() == "precious\n"


def test_a_ledger_file_that_is_a_link_is_refused(out: Path, victim: Path) -> None:
    (out / "ledger.sqlite3").symlink_to(victim)
    with pytest.raises(LedgerError, match="is a symbolic link"):
        SqliteLedger.open(out)
    assert victim.read_text() == "precious\n"


def test_a_partial_folder_that_is_a_link_is_removed_and_never_followed(
    out: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (out / PARTIAL_DIR).symlink_to(elsewhere, target_is_directory=True)
    clear_partial(out)
    assert (elsewhere / "keep.txt").read_text() == "mine"  # the link went, not its target
    path = partial_dir(out)
    assert path.is_dir() and not path.is_symlink() and (path.stat().st_mode & 0o777) == 0o700
    path.rmdir()
    (out / PARTIAL_DIR).symlink_to(elsewhere, target_is_directory=True)  # planted mid-run
    with pytest.raises(OSError, match="not a folder"):
        partial_dir(out)


@pytest.mark.e2e
def test_a_batch_writes_nothing_through_links_planted_in_its_folder(
    out: Path, victim: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / PARTIAL_DIR).symlink_to(elsewhere, target_is_directory=True)
    (out / f".{MANIFEST_NAME}.tmp").symlink_to(victim)
    (out / "index.html").symlink_to(victim)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"prompt": "a lighthouse"}) + "\n")
    cmd = [
        sys.executable, "-m", "wavespeed_async.cli", "batch", str(jobs), "-o", str(out),
        "--model", "wavespeed-ai/flux-kontext-dev", "--emulator", "--emulator-latency", "fast",
        "-q",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious\n"
    assert list(elsewhere.iterdir()) == []
    assert len(list(out.glob("line00001_*.png"))) == 1
    assert not (out / "index.html").is_symlink()


# -- a share's password ------------------------------------------------------------------


def test_a_client_given_a_share_url_shows_no_password_in_a_traceback_s_locals() -> None:
    with pytest.raises(ValidationError) as info:
        Client(CANARY_KEY, base_url="ftp://example.com", share=share_url())
    assert PASSWORD not in with_locals(info.value)
    with pytest.raises(ValidationError) as info:
        Client(CANARY_KEY, share=share_url().replace("redis", "nosuchscheme", 1))
    assert PASSWORD not in with_locals(info.value) + str(info.value)


def test_the_gallery_shows_no_password_of_a_share_or_any_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = argparse.Namespace(
        jobs="jobs.jsonl", output="out", api_key=None, base_url=None, share=share_url()
    )
    target = Target(api_key=CANARY_KEY, base_url="https://api.example.com", emulator_scale=None)
    for argv in (
        ["batch", "jobs.jsonl", "-o", "out", "--share", share_url()],
        ["batch", "jobs.jsonl", "-o", "out", f"--share={share_url()}"],
    ):
        monkeypatch.setattr(sys, "argv", ["wavespeed-async", *argv])
        shown = command_line(args, target)
        assert PASSWORD not in shown and "redis://***@127.0.0.1:6379/0" in shown
    page = render_gallery(
        [GalleryItem(number=1, status="failed", error=f"could not reach {share_url()}")],
        command=f"my-script --share {share_url()}",
    )
    assert PASSWORD not in page and "redis://***@127.0.0.1" in page
