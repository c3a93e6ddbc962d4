"""The examples answer bad input cleanly: one line and an exit code, never a traceback."""

# No `from __future__ import annotations`: the FastAPI example's handlers are resolved at
# runtime.

import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.test_examples import ROOT, load_fastapi_example, run_example
from tests.test_fastapi import serve_app
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.fastapi import WaveSpeed


@pytest.mark.e2e
def test_bulk_example_reports_a_bad_aspect_ratio_in_one_line(tmp_path: Path) -> None:
    proc = run_example("bulk_text_to_image.py", "--aspect-ratio", "5:4", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: aspect_ratio: '5:4' is not allowed")
    assert "Traceback" not in proc.stderr
    assert "emulator:" not in proc.stderr  # refused before anything started


@pytest.mark.e2e
def test_bulk_example_reports_a_missing_prompt_file(tmp_path: Path) -> None:
    proc = run_example("bulk_text_to_image.py", "absent.txt", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "absent.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.e2e
def test_edit_example_checks_the_edit_before_uploading(tmp_path: Path) -> None:
    proc = run_example("edit_image.py", "--size", "1024x768", cwd=tmp_path)
    assert proc.returncode == 2
    assert 'write it "1024*768"' in proc.stderr
    assert "Traceback" not in proc.stderr
    # Nothing was started, so nothing was uploaded.
    assert "emulator:" not in proc.stderr and "uploaded" not in proc.stderr
    proc = run_example("edit_image.py", "missing.png", cwd=tmp_path)
    assert proc.returncode == 2 and "missing.png: no such file" in proc.stderr


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_examples_default_output_folders_are_git_ignored() -> None:
    paths = ["images/0001_0.png", "edited/x_0.png", "out/results.jsonl"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths, "examples/images/cottage.png"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ignored == paths


@pytest.mark.anyio
async def test_fastapi_example_answers_invalid_input_with_422() -> None:
    example = load_fastapi_example()
    async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:
        ws = WaveSpeed(
            public_url="http://set-by-serve.invalid",
            api_key=CANARY_KEY,
            base_url=emu.base_url,
            poll=fast_poll(),
            retry=fast_retry(),
        )
        async with serve_app(example.create_app(ws), ws) as url, aiohttp.ClientSession() as http:
            body = {"prompt": "a fox", "aspect_ratio": "5:4"}
            async with http.post(f"{url}/generate", json=body) as resp:
                assert resp.status == 422
                answer = await resp.json()
        assert emu.stats().submits_received == 0
    assert answer["detail"].startswith("aspect_ratio: '5:4' is not allowed")
    assert answer["task_id"] is None
