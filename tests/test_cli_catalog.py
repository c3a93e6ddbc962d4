"""``models``, ``schema``, ``types`` and the batch's check before its first submit.

The commands run in this process against ``--emulator`` (an in-process emulator on a
loopback port), called through the parser as ``main`` would; the end-to-end tests of the
console script are in ``test_cli_catalog_e2e.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll
from wavespeed_async import Client, Prediction, TypedRequest, ValidationError
from wavespeed_async.cli import _parser
from wavespeed_async.cli._catalog import check_plan
from wavespeed_async.cli._common import Target
from wavespeed_async.cli._jobs import parse_jobs
from wavespeed_async.cli._plan import Plan
from wavespeed_async.emulator import (
    CATALOGUE,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
    TaskRecord,
)
from wavespeed_async.jobs.journal import Journal

LORA = "wavespeed-ai/flux-dev-lora"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
VIDEO = "wavespeed-ai/wan-2.2/t2v-480p"
UPSCALER = "wavespeed-ai/image-upscaler"


def run_cli(*argv: str) -> int:
    args: argparse.Namespace = _parser().parse_args([*argv, "--emulator"])
    code: int = args.func(args)
    return code


def test_models_prints_id_type_and_base_price_of_every_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli("models") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["MODEL", "TYPE", "BASE", "PRICE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert list(rows) == list(CATALOGUE)
    assert rows[LORA] == ["text-to-image", "$0.02"]
    assert rows[VIDEO] == ["text-to-video", "$0.03"]


def test_models_filters_by_type_and_prints_json_with_exact_prices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli("models", "--type", "text-to-video", "--json") == 0
    [video] = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert video["id"] == VIDEO
    assert video["base_price"] == Decimal("0.03")
    assert video["type"] == "text-to-video"
    assert run_cli("models", "--type", "audio") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no models of type 'audio'" in captured.err


def test_schema_shows_fields_types_ranges_defaults_and_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli("schema", LORA) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"{LORA}: FLUX.1 [dev] LoRA"
    assert "base price $0.02" in lines[1]
    table = lines[lines.index(next(x for x in lines if x.startswith("FIELD"))) + 1 :]
    rows = {line.split()[0]: line.split() for line in table if not line.startswith("    ")}
    assert rows["prompt"][:4] == ["prompt", "string", "yes", "-"]
    assert rows["num_images"][:4] == ["num_images", "integer", "no", "1"]
    assert "an integer 1 ~ 4" in out
    assert rows["loras[].scale"][:4] == ["loras[].scale", "number", "no", "1.0"]
    assert "  loras[].path         string   yes" in out
    assert '"W*H" with each dimension 512 ~ 1536' in out
    assert "The number of images to generate." in out  # descriptions under their rows


def test_schema_of_an_unknown_model_exits_2_with_the_closest_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli("schema", "wavespeed-ai/flux-lora") == 2
    assert f"did you mean '{LORA}'" in capsys.readouterr().err
    assert run_cli("schema", UPSCALER, "--json") == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == CATALOGUE[UPSCALER].request_schema


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("generated_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_types_writes_classes_that_run_jobs_and_are_checked_at_submit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pkg" / "models.py"
    assert run_cli("types", LORA, UPSCALER, "-o", str(out)) == 0
    assert f"wrote 2 typed request(s) to {out}" in capsys.readouterr().err
    module = load_module(out)
    assert set(module.MODELS) == {LORA, UPSCALER}
    lora_cls: type[TypedRequest] = module.FluxDevLora
    item_cls = module.FluxDevLoraLora
    config = EmulatorConfig(latency=LatencyProfile.fast())

    async def go() -> tuple[Prediction, Prediction, TaskRecord | None]:
        async with (
            Emulator(config, port=None) as emu,
            Client(
                CANARY_KEY, base_url=emu.base_url, transport=emu.transport(), poll=fast_poll()
            ) as client,
        ):
            pred = await client.run(
                lora_cls(prompt="a fox", loras=[item_cls(path="a/b", scale=0.5)], num_images=2)
            )
            upscaled = await client.run(module.ImageUpscaler(image="https://x.test/a.png"))
            bad = lora_cls(prompt="a fox", loras=[item_cls(path="a/b", scale=9)])
            with pytest.raises(ValidationError, match=r"loras\[0\]\.scale: 9 is above"):
                await client.submit(bad)
            assert emu.stats().tasks_created == 2
            return pred, upscaled, emu.task(pred.id)

    pred, upscaled, task = anyio.run(go)
    assert pred.ok and len(pred.outputs) == 2
    assert upscaled.ok
    assert task is not None and task.dropped_inputs == ()


def test_types_of_an_unknown_model_writes_nothing_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models.py"
    assert run_cli("types", LORA, "acme/nope", "-o", str(out)) == 2
    assert "'acme/nope' is not in the catalogue" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli("types", "--all") == 0
    source = capsys.readouterr().out
    assert "class FluxKontextDev(TypedRequest" in source
    assert "class Wan22T2v480p(TypedRequest" in source


def write_jobs(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_check_plan_marks_every_line_the_catalogue_refuses_invalid_at_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    jobs_file = write_jobs(
        tmp_path / "jobs.jsonl",
        [
            {"model": LORA, "prompt": "fine"},
            {"model": LORA, "prompt": "x", "guidence_scale": 3, "num_images": 9},
            {"model": PRO, "prompt": "x", "aspect_ration": "16:9"},
            {"model": UPSCALER, "image": "cat.png"},  # a local file: checked as a URL
            {"model": VIDEO, "prompt": "x", "duration": 6},
            {"model": "acme/unlisted", "prompt": "left to the client"},
        ],
    )
    jobs = parse_jobs(jobs_file.read_text(), default_model=None, base=tmp_path)
    assert [j.line for j in jobs if j.warnings] == [3]  # the built-in spec's note
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        for job in jobs:
            journal.ensure(job.line, job.hash, job.model)
        plan = Plan(jobs, to_submit=list(jobs))
        check_plan(Target(None, "emulator", 0.0), plan, journal)
        states = {r.line: r.state for r in journal.all()}
    assert [j.line for j in plan.to_submit] == [1, 4, 6]
    assert [j.line for j in plan.invalid] == [2, 3, 5]
    assert states == {1: "pending", 2: "invalid", 3: "invalid", 4: "pending", 5: "invalid",
                      6: "pending"}  # fmt: skip
    two = plan.invalid[0].error or ""
    assert "guidence_scale: not a field" in two and "num_images: 9 is above" in two
    assert plan.jobs[2].warnings == ()  # an error now, not a warning as well
