"""Local images named by a jobs file: only from its folder (links followed), only images."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Final

import anyio
import pytest

from tests.test_cli import CANARY, DEV, REPO, _env, cli_cmd, manifest, write_jobs
from wavespeed_async import Client, ValidationError
from wavespeed_async.cli._jobs import LocalFile, image_kind, parse_jobs
from wavespeed_async.cli._uploads import Uploads
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = pytest.mark.anyio

PNG: Final = REPO / "examples" / "images" / "cottage.png"


async def run_batch(jobs: Path, out: Path, *extra: str) -> tuple[int, str, int]:
    """Run the batch against an in-process emulator; (exit code, stderr, uploads seen)."""
    async with Emulator(EmulatorConfig(seed=5, latency=LatencyProfile.fast())) as emu:
        cmd = cli_cmd("batch", str(jobs), "-o", str(out), "--base-url", emu.base_url, *extra)
        done = await anyio.run_process(
            cmd, check=False, env=_env(WAVESPEED_API_KEY=CANARY), cwd=REPO
        )
        uploads = emu.stats().uploads
    return done.returncode, done.stderr.decode(), uploads


def layout(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    shutil.copy(PNG, folder / "in.png")
    shutil.copy(PNG, tmp_path / "outside.png")
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    (folder / "notes.png").write_text("not an image at all\n", encoding="utf-8")
    return write_jobs(
        folder / "jobs.jsonl",
        [
            {"model": DEV, "prompt": "a", "image": "/etc/passwd"},
            {"model": DEV, "prompt": "b", "image": "../outside.png"},
            {"model": DEV, "prompt": "c", "image": "link.png"},
            {"model": DEV, "prompt": "d", "image": "notes.png"},
            {"model": DEV, "prompt": "e", "image": "in.png"},
        ],
    )


@pytest.mark.e2e
async def test_paths_outside_the_folder_and_non_images_are_per_line_errors(
    tmp_path: Path,
) -> None:
    jobs = layout(tmp_path)
    code, err, uploads = await run_batch(jobs, tmp_path / "out")
    assert code == 1, err
    assert "Traceback" not in err
    assert f"{jobs}:1: image: '/etc/passwd' is outside the jobs file's folder" in err
    assert f"{jobs}:2: image: '../outside.png' is outside" in err
    assert f"{jobs}:3: image: 'link.png' is outside" in err
    assert f"{jobs}:4: image: 'notes.png' is not an image" in err
    status = {e["line"]: e["status"] for e in manifest(tmp_path / "out")}
    assert status == {1: "invalid", 2: "invalid", 3: "invalid", 4: "invalid", 5: "completed"}
    assert uploads == 1  # only in.png left the machine


@pytest.mark.e2e
async def test_allow_any_path_lifts_the_folder_rule_but_not_the_image_check(
    tmp_path: Path,
) -> None:
    jobs = layout(tmp_path)
    code, err, uploads = await run_batch(jobs, tmp_path / "out", "--allow-any-path")
    assert code == 1, err
    assert f"{jobs}:1: image: '/etc/passwd' is not an image" in err
    assert f"{jobs}:4: image: 'notes.png' is not an image" in err
    status = {e["line"]: e["status"] for e in manifest(tmp_path / "out")}
    assert status == {1: "invalid", 2: "completed", 3: "completed", 4: "invalid", 5: "completed"}
    assert uploads == 2  # outside.png (twice named, uploaded once) and in.png


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\r", "png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF\0", "jpeg"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "webp"),
        (b"GIF89a\x01\0\x01\0\0\0", "gif"),
        (b"root:x:0:0:r", None),
        (b"RIFF\x24\0\0\0WAVEfmt ", None),
        (b"", None),
    ],
)
def test_image_kind_by_leading_bytes(head: bytes, kind: str | None) -> None:
    assert image_kind(head) == kind


def _one_local_file(folder: Path) -> LocalFile:
    jobs = parse_jobs(
        json.dumps({"prompt": "p", "image": "in.png"}), default_model=DEV, base=folder
    )
    assert jobs[0].error is None
    (found,) = jobs[0].local_media["image"]
    return found


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks and FIFOs")
@pytest.mark.parametrize("swap", ["link outside", "other file", "fifo", "gone"])
def test_a_file_swapped_after_the_jobs_file_was_read_is_not_read(tmp_path: Path, swap: str) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    shutil.copy(PNG, folder / "in.png")
    shutil.copy(PNG, tmp_path / "secret.png")
    found = _one_local_file(folder)
    assert found.read("image") == PNG.read_bytes()  # unchanged: read as checked
    if swap == "other file":  # another file moved over it
        shutil.copy(tmp_path / "secret.png", folder / "new.png")
        (folder / "new.png").replace(folder / "in.png")
    else:
        (folder / "in.png").unlink()
    if swap == "link outside":
        (folder / "in.png").symlink_to(tmp_path / "secret.png")
    elif swap == "fifo":
        os.mkfifo(folder / "in.png")  # opening it must not wait for a writer
    match = "cannot read" if swap == "gone" else "another file than when the jobs file was read"
    with pytest.raises(ValidationError, match=match) as info:
        found.read("image")
    assert info.value.field == "image"


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
async def test_the_batch_uploads_nothing_for_a_swapped_file(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    shutil.copy(PNG, folder / "in.png")
    shutil.copy(PNG, tmp_path / "secret.png")
    job = parse_jobs(
        json.dumps({"prompt": "p", "image": "in.png"}), default_model=DEV, base=folder
    )[0]
    (folder / "in.png").unlink()
    (folder / "in.png").symlink_to(tmp_path / "secret.png")
    async with (
        Emulator(EmulatorConfig(seed=5, latency=LatencyProfile.fast())) as emu,
        Client(CANARY, base_url=emu.base_url) as client,
    ):
        with pytest.raises(ValidationError, match="another file"):
            await Uploads(client).request_body(job)
        assert emu.stats().uploads == 0
