"""The programs in examples/ run, with one command each, against the built-in emulator.

Each runs as a user would run it (a subprocess of this Python, from another directory),
and the outcomes are checked: files written, exit codes, a webhook round trip.
"""

# No `from __future__ import annotations`: the FastAPI example's handlers are resolved at
# runtime, and so are those of the module loaded here.

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.test_fastapi import serve_app
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.fastapi import WaveSpeed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(
    name: str, *args: str, cwd: Path, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if key is not None:
        env["WAVESPEED_API_KEY"] = key
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--latency", "fast", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_edit_image_uploads_the_local_file_and_saves_the_edit(tmp_path: Path) -> None:
    # --emulator wins over a key in the environment: nothing reaches the real API.
    args = ["--emulator", "--size", "512*768", "--out", "out"]
    proc = run_example("edit_image.py", *args, cwd=tmp_path, key=CANARY_KEY)
    assert proc.returncode == 0, proc.stderr
    assert "emulator" in proc.stderr and "uploaded cottage.png" in proc.stderr
    paths = [Path(line) for line in proc.stdout.splitlines()]
    assert len(paths) == 1
    saved = tmp_path / paths[0] if not paths[0].is_absolute() else paths[0]
    assert saved.parent == tmp_path / "out"
    assert png_size(saved) == (512, 768)


def test_edit_image_reports_a_failed_task_with_its_id(tmp_path: Path) -> None:
    proc = run_example("edit_image.py", "--prompt", "[fail:1200] not allowed", cwd=tmp_path)
    assert proc.returncode == 1
    assert "error: task " in proc.stderr and "1200" in proc.stderr
    assert not (tmp_path / "edited").exists()


def test_bulk_text_to_image_saves_every_image_with_progress(tmp_path: Path) -> None:
    # No key in the environment: the emulator is used without being asked for.
    proc = run_example("bulk_text_to_image.py", "--plain", "--out", "imgs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    assert saved == [f"{n:04d}_0.png" for n in range(1, 9)]
    assert all(png_size(tmp_path / "imgs" / name) == (1024, 1024) for name in saved)
    progress = [line for line in proc.stderr.splitlines() if "handled" in line]
    assert progress[0].startswith("0/8 handled") and progress[-1].startswith("8/8 handled")
    assert "8 of 8 images saved" in proc.stdout


def test_bulk_text_to_image_reads_a_prompt_file_and_reports_failures(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\na harbour at dawn\n\n[fail] a broken one\na desert road\n")
    args = [str(prompts), "--aspect-ratio", "16:9", "--out", "o"]
    proc = run_example("bulk_text_to_image.py", *args, cwd=tmp_path)
    assert proc.returncode == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["0001_0.png", "0003_0.png"]
    assert png_size(tmp_path / "o" / "0001_0.png") == (1344, 768)
    assert "prompt 2 (task " in proc.stderr
    assert "2 of 3 images saved" in proc.stdout


def test_fastapi_app_demo_completes_a_generate_by_webhook(tmp_path: Path) -> None:
    proc = run_example("fastapi_app.py", "--emulator", "--demo", "--port", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["http_status"] == 200 and result["status"] == "completed"
    assert len(result["outputs"]) == 1
    assert result["webhook_deliveries"] == 1 and result["polls"] == 0


def load_fastapi_example() -> ModuleType:
    path = EXAMPLES / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_app_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_fastapi_app_endpoints_in_process() -> None:
    example = load_fastapi_example()
    async with Emulator(EmulatorConfig(seed=5, latency=LatencyProfile.fast())) as emu:
        ws = WaveSpeed(
            public_url="http://set-by-serve.invalid",
            api_key=CANARY_KEY,
            base_url=emu.base_url,
            poll=fast_poll(),
            retry=fast_retry(),
        )
        async with serve_app(example.create_app(ws), ws) as url, aiohttp.ClientSession() as http:
            body = {"prompt": "a red fox in the snow", "aspect_ratio": "9:16", "seed": 4}
            async with http.post(f"{url}/generate", json=body) as resp:
                assert resp.status == 200, await resp.text()
                done = await resp.json()
            async with http.get(f"{url}/tasks/{done['id']}") as resp:
                assert resp.status == 200
                again = await resp.json()
            async with http.post(f"{url}/generate", json={"prompt": "[fail:1200] no"}) as resp:
                assert resp.status == 422
                failed = await resp.json()
            async with http.get(f"{url}/tasks/{'0' * 32}") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"] == "not_found"
        stats = emu.stats()
    assert done["status"] == "completed" and again == done
    record = stats.tasks[done["id"]]
    assert (record.width, record.height, record.seed) == (768, 1344, 4)
    assert record.webhook_deliveries == 1 and record.webhook_url == f"{url}/wavespeed/webhook"
    assert failed["task_id"] in stats.tasks and "1200" in failed["detail"]
    assert failed["error"] == "task_failed" and failed["code"] == 1200
    assert stats.tasks_created == 2 and stats.webhook_deliveries == 2


def test_ray_pipeline_writes_every_row_to_parquet_with_its_task(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the ray extra is not installed")
    args = ["--rows", "12", "--actors", "1", "--out", "out.parquet", "--ledger", "ledger"]
    proc = run_example("ray_pipeline.py", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "12 rows written to out.parquet/: {'completed': 12}" in proc.stdout
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 12
    assert set(table.column("status").to_pylist()) == {"completed"}
    assert len(set(table.column("task_id").to_pylist())) == 12
    assert (tmp_path / "ledger" / "ledger.sqlite3").is_file()


def test_ray_pipeline_by_default_writes_only_under_a_git_ignored_folder(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet", reason="the ray extra is not installed")
    proc = run_example("ray_pipeline.py", "--rows", "3", "--actors", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    made = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "out").iterdir())
    assert made == ["out/ray_pipeline"]
    # Run from a clone, the same paths are ignored by git: the clone stays clean.
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("out/ray_pipeline/images.parquet", "out/ray_pipeline/ledger"):
        ignored = subprocess.run([git, "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, path


def test_resume_from_ids_collects_every_saved_task_with_wait_many(tmp_path: Path) -> None:
    proc = run_example("resume_from_ids.py", "--emulator", "--count", "6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ids = (tmp_path / "out" / "resume" / "ids.txt").read_text().split()
    assert len(ids) == len(set(ids)) == 6
    assert "submit: 6 task id(s)" in proc.stdout and "left after 2 result(s)" in proc.stdout
    assert "collect: 6 of 6 task(s) completed" in proc.stdout
    saved = sorted(p.name for p in (tmp_path / "out" / "resume").glob("*.png"))
    assert saved == sorted(f"{task_id}_0.png" for task_id in ids)
