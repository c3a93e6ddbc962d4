"""The catalogue end to end, with the console script and an emulator in another process.

The console script's ``models``/``schema``/``types`` and a batch's check against an emulator
in another process; a generated module under ``mypy --strict`` running a job; a second
process that reads the catalogue file instead of fetching it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import CANARY, REPO, _env, cli, emulator_process, manifest, write_jobs

pytestmark = pytest.mark.e2e

LORA = "wavespeed-ai/flux-dev-lora"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
VIDEO = "wavespeed-ai/wan-2.2/t2v-480p"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with emulator_process() as base_url:
        yield base_url


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as answer:  # noqa: S310
        data: dict[str, Any] = json.loads(answer.read())
    return data


def reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/_emulator/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def python(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=_env(WAVESPEED_API_KEY=CANARY),
        cwd=cwd or REPO,
        timeout=120,
    )


def test_models_schema_and_types_work_on_the_built_in_emulator(tmp_path: Path) -> None:
    r = cli("models", "--emulator")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["MODEL", "TYPE", "BASE", "PRICE"]
    assert any(
        line.split()[:3] == [VIDEO, "text-to-video", "$0.03"] for line in r.stdout.splitlines()
    )
    r = cli("schema", LORA, "--emulator")
    assert r.returncode == 0, r.stderr
    assert "loras[].scale" in r.stdout and "an integer 1 ~ 4" in r.stdout
    out = tmp_path / "models.py"
    r = cli("types", LORA, PRO, "-o", str(out), "--emulator")
    assert r.returncode == 0, r.stderr
    assert "class FluxDevLora(TypedRequest" in out.read_text()
    r = cli("schema", "acme/none", "--emulator")
    assert r.returncode == 2
    assert "'acme/none' is not in the catalogue" in r.stderr


def test_models_against_a_server_and_a_refused_key(url: str) -> None:
    r = cli("models", "--json", "--base-url", url, key=CANARY)
    assert r.returncode == 0, r.stderr
    assert {m["id"] for m in json.loads(r.stdout)} >= {LORA, PRO, VIDEO}
    with emulator_process("--api-key", CANARY) as guarded:
        r = cli("models", "--base-url", guarded, key="wsk-refused-0000")
    assert r.returncode == 2
    assert "refused the API key" in r.stderr


def test_batch_reports_every_bad_line_at_once_and_sends_none_of_them(
    url: str, tmp_path: Path
) -> None:
    reset(url)
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"model": LORA, "prompt": "one"},
            {"model": LORA, "prompt": "typo", "guidence_scale": 3},
            {"model": LORA, "prompt": "lora", "loras": [{"path": "a/b", "scale": 9}]},
            {"model": VIDEO, "prompt": "long", "duration": 6},
            {"model": PRO, "prompt": "two"},
        ],
    )
    r = cli("batch", str(jobs), "-o", str(tmp_path / "out"), "-q", "--base-url", url, key=CANARY)
    assert r.returncode == 1, r.stderr  # some lines are invalid
    reported = [line for line in r.stderr.splitlines() if line.startswith(f"{jobs}:")]
    assert [line.split(":")[1] for line in reported] == ["2", "3", "4"]
    assert "did you mean 'guidance_scale'?" in reported[0]
    assert "loras[0].scale: 9 is above" in reported[1]
    assert "duration: 6 is not one of" in reported[2]
    assert [m["status"] for m in manifest(tmp_path / "out")] == [
        "completed", "invalid", "invalid", "invalid", "completed",
    ]  # fmt: skip
    seen = stats(url)
    assert seen["submits_received"] == 2  # only the good lines were sent
    assert seen["inputs_dropped"] == {}


GENERATED_USE = """
import asyncio
import sys

from wavespeed_async import Client, ValidationError

from models import MODELS, FluxDevLora, FluxDevLoraLora


async def main(url: str) -> None:
    request = FluxDevLora(prompt="a fox", loras=[FluxDevLoraLora(path="a/b", scale=0.5)])
    async with Client(base_url=url) as client:
        pred = await client.run(request)
        try:
            await client.submit(FluxDevLora(prompt="a fox", num_images=9))
        except ValidationError as exc:
            print("refused", exc.field)
    print(pred.status, len(pred.outputs), len(MODELS))


asyncio.run(main(sys.argv[1]))
"""


def test_a_generated_module_passes_mypy_strict_and_runs_a_job(url: str, tmp_path: Path) -> None:
    r = cli("types", "--all", "-o", str(tmp_path / "models.py"), "--base-url", url, key=CANARY)
    assert r.returncode == 0, r.stderr
    (tmp_path / "use.py").write_text(GENERATED_USE)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "models.py", "use.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    run = subprocess.run(
        [sys.executable, "use.py", url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(WAVESPEED_API_KEY=CANARY),
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["refused", "num_images", "completed", "1", "5"]


SECOND_PROCESS = """
import asyncio
import sys

from wavespeed_async import CatalogConfig, Client, ValidationError


async def main(url: str, folder: str) -> None:
    config = CatalogConfig(cache_dir=folder)
    async with Client(base_url=url, catalog=config) as client:
        try:
            await client.submit("wavespeed-ai/flux-dev-lora", {"prompt": "x", "guidence_scale": 2})
        except ValidationError as exc:
            print("refused", exc.field)
        assert client._input_checks is not None
        print("fetches", client._input_checks.cache.fetches)


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_a_second_process_reads_the_catalogue_file_without_fetching(
    url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    first = python(SECOND_PROCESS, url, str(folder))
    second = python(SECOND_PROCESS, url, str(folder))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.split() == ["refused", "guidence_scale", "fetches", "1"]
    assert second.stdout.split() == ["refused", "guidence_scale", "fetches", "0"]
    [file] = folder.glob("catalog-*.json")
    header, _, _body = file.read_bytes().partition(b'"body"')  # the body is the answer itself
    assert url.encode() not in header
    assert CANARY.encode() not in file.read_bytes()
