"""The catalogue (``GET /api/v3/models``), its schemas, and the models beyond the seed two."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from wavespeed_async.emulator import (
    CATALOGUE,
    EmulatedModel,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
    ManualClock,
)

from .helpers import DEV, LORA, PRO, UPSCALER, VIDEO, call, in_process, parse_png, run_task

pytestmark = pytest.mark.anyio

#: The seed product pages, transcribed: field -> (type, required, default, min, max).
DEV_PAGE: dict[str, tuple[str, bool, Any, Any, Any]] = {
    "prompt": ("string", True, "Change the car color to red.", None, None),
    "image": (
        "string",
        False,
        "https://d2g64w682n9w0w.cloudfront.net/media/images/1750940187685254815_W4yPaBQU.jpg",
        None,
        None,
    ),
    "size": ("string", False, "1024*1024", 512, 1536),
    "num_inference_steps": ("integer", False, 28, 1, 50),
    "guidance_scale": ("number", False, 2.5, 1.0, 20.0),
    "num_images": ("integer", False, 1, 1, 4),
    "seed": ("integer", False, -1, -1, 9999999999),
    "enable_base64_output": ("boolean", False, False, None, None),
    "enable_safety_checker": ("boolean", False, True, None, None),
}
PRO_PAGE: dict[str, tuple[str, bool, Any, Any, Any]] = {
    "prompt": ("string", True, None, None, None),  # a long example text (checked apart)
    "aspect_ratio": ("string", False, "1:1", None, None),
    "num_images": ("integer", False, 1, 1, 4),
    "seed": ("integer", False, None, -1, 9999999999),
    "guidance_scale": ("number", False, 3.5, 1.0, 10.0),
    "safety_tolerance": ("string", False, "2", None, None),
}


async def models(emu: Emulator) -> dict[str, dict[str, Any]]:
    status, body = await call(emu, "GET", "/api/v3/models")
    assert status == 200
    assert set(body) == {"code", "message", "data"}
    return {m["model_id"]: m for m in body["data"]}


async def test_models_lists_every_model_it_runs_with_the_documented_shape() -> None:
    emu, _ = in_process()
    async with emu:
        listed = await models(emu)
    assert set(listed) == set(CATALOGUE) == {DEV, PRO, VIDEO, LORA, UPSCALER}
    orders = []
    for model_id, m in listed.items():
        assert set(m) == {
            "model_id",
            "name",
            "description",
            "type",
            "base_price",
            "sort_order",
            "formula",
            "api_schema",
        }
        assert isinstance(m["base_price"], float)  # a JSON number, not a string
        assert isinstance(m["formula"], str)
        orders.append(m["sort_order"])
        [run] = m["api_schema"]["api_schemas"]
        assert run["type"] == "model_run"
        assert run["method"] == "POST"
        assert run["server"] == "http://emulator.invalid"
        assert run["api_path"] == f"/api/v3/{model_id}"
        schema = run["request_schema"]
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])
        assert schema["x-order-properties"] == list(schema["properties"])
        for prop in schema["properties"].values():
            assert prop["type"] in {"string", "integer", "number", "boolean", "array"}
            assert prop["description"]
    assert orders == sorted(orders)
    assert {m["type"] for m in listed.values()} == {
        "image-to-image",
        "text-to-image",
        "text-to-video",
        "image-upscaler",
    }


@pytest.mark.parametrize(("model", "page"), [(DEV, DEV_PAGE), (PRO, PRO_PAGE)])
async def test_kontext_schemas_match_the_product_pages(
    model: str, page: dict[str, tuple[str, bool, Any, Any, Any]]
) -> None:
    emu, _ = in_process()
    async with emu:
        schema = (await models(emu))[model]["api_schema"]["api_schemas"][0]["request_schema"]
    props = schema["properties"]
    assert list(props) == list(page)  # same fields, in the page's order
    assert schema["required"] == ["prompt"]
    for name, (kind, required, default, low, high) in page.items():
        prop = props[name]
        assert prop["type"] == kind, name
        assert (name in schema["required"]) == required, name
        if default is not None:
            assert prop["default"] == default, name
        elif name != "prompt":
            assert "default" not in prop, name
        assert prop.get("minimum") == low, name
        assert prop.get("maximum") == high, name
    if model == PRO:
        assert props["prompt"]["default"].startswith("A grand steampunk airship")
        assert props["aspect_ratio"]["enum"] == [
            "21:9",
            "16:9",
            "4:3",
            "3:2",
            "1:1",
            "2:3",
            "3:4",
            "9:16",
            "9:21",
        ]
        assert props["safety_tolerance"]["enum"] == ["1", "2", "3", "4", "5"]


async def test_catalogue_in_python_matches_the_endpoint_and_config_can_add_and_reprice() -> None:
    extra = EmulatedModel(
        model_id="acme/text-to-image",
        name="Acme",
        description="An extra model.",
        type="text-to-image",
        request_schema={
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "What to draw."}},
            "required": ["prompt"],
        },
        unit_price=Decimal("0.005"),
        sort_order=1,
    )
    emu, _ = in_process(models=[extra], prices={DEV: Decimal("0.03")})
    async with emu:
        listed = await models(emu)
        assert next(iter(listed)) == "acme/text-to-image"  # sort_order 1 comes first
        assert listed[DEV]["base_price"] == 0.03
        assert listed[DEV]["formula"].startswith("0.03 * ")
        assert set(emu.catalogue()) == {*CATALOGUE, "acme/text-to-image"}
        assert emu.catalogue()["acme/text-to-image"].unit_price == Decimal("0.005")
        task = await run_task(emu, "acme/text-to-image", {"prompt": "x", "size": "9*9"})
        record = emu.task(task["id"])
        assert record is not None
        assert record.dropped_inputs == ("size",)
        assert record.price == Decimal("0.005")


def test_an_emulated_model_refuses_a_bad_price_or_schema() -> None:
    with pytest.raises(ValueError, match="unit_price"):
        EmulatedModel("a/b", "n", "d", "text-to-image", {"properties": {}}, Decimal(-1))
    with pytest.raises(TypeError, match="properties"):
        EmulatedModel("a/b", "n", "d", "text-to-image", {}, Decimal(1))
    with pytest.raises(ValueError, match="pricing"):
        EmulatedModel(
            "a/b",
            "n",
            "d",
            "text-to-image",
            {"properties": {}},
            Decimal(1),
            pricing="per_token",  # type: ignore[arg-type]
        )


async def test_unknown_input_keys_are_dropped_silently_and_the_task_is_billed_with_defaults() -> (
    None
):
    emu, _ = in_process(initial_balance=Decimal(1))
    async with emu:
        # A misspelt aspect_ratio: the API runs 1:1 and bills it.
        data = await run_task(emu, PRO, {"prompt": "wide", "aspect_ration": "16:9", "x": 1})
        assert data["input"] == {"prompt": "wide"}
        await emu.advance(1)
        record = emu.task(data["id"])
        assert record is not None
        assert record.status == "completed"
        assert record.dropped_inputs == ("aspect_ration", "x")
        assert (record.width, record.height) == (1024, 1024)
        assert record.price == Decimal("0.04")
        stats = emu.stats()
        assert stats.inputs_dropped == {"aspect_ration": 1, "x": 1}
        assert stats.charged_usd == Decimal("0.04")
        assert emu.balance == Decimal("0.96")


async def test_control_fields_are_never_dropped() -> None:
    emu, _ = in_process()
    async with emu:
        data = await run_task(
            emu, PRO, {"prompt": "p", "enable_base64_output": True, "enable_safety_checker": False}
        )
        await emu.advance(1)
        record = emu.task(data["id"])
        assert record is not None
        assert record.dropped_inputs == ()
        _, body = await call(emu, "GET", f"/api/v3/predictions/{data['id']}/result")
        assert not body["data"]["outputs"][0].startswith("http")  # base64 was honoured


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (VIDEO, {"prompt": "v", "duration": 6}, "duration: 6 is not allowed; allowed: one of 5, 8"),
        (VIDEO, {"prompt": "v", "duration": "5"}, "duration: expected an integer, got str"),
        (VIDEO, {"prompt": "v", "size": "1024*1024"}, "size: '1024*1024' is not allowed"),
        (VIDEO, {"duration": 5}, "prompt: required (a string)"),
        (VIDEO, {"prompt": "v", "seed": 2**31}, "seed: 2147483648 is above the maximum"),
        (LORA, {"prompt": "l", "loras": {"path": "a/b"}}, "loras: expected an array, got dict"),
        (
            LORA,
            {"prompt": "l", "loras": [{"path": f"a/{i}"} for i in range(4)]},
            "loras: 4 items is above the maximum; allowed: an array of <= 3 items",
        ),
        (LORA, {"prompt": "l", "loras": [{"scale": 1}]}, "loras[0].path: required (a string"),
        (
            LORA,
            {"prompt": "l", "loras": [{"path": "a/b"}, {"path": "c/d", "scale": 4.5}]},
            "loras[1].scale: 4.5 is above the maximum; allowed: 0 ~ 4",
        ),
        (LORA, {"prompt": "l", "loras": [{"path": ""}]}, "loras[0].path: 0 characters"),
        (LORA, {"prompt": "l", "loras": ["a/b"]}, "loras[0]: expected an object, got str"),
        (LORA, {"prompt": "l", "size": "2048*1024"}, "size: '2048*1024' is out of range"),
        (UPSCALER, {}, "image: required (a string)"),
        (UPSCALER, {"image": "https://x/y.png", "target_resolution": "16k"}, "target_resolution"),
        (PRO, {"prompt": "p", "enable_sync_mode": "yes"}, "enable_sync_mode: expected a boolean"),
        (DEV, {"prompt": "p", "guidance_scale": "2"}, "guidance_scale: expected a number, got"),
        (DEV, {"prompt": "p", "num_images": True}, "num_images: expected an integer, got bool"),
    ],
)
async def test_bad_inputs_are_400_naming_the_field_and_what_is_allowed(
    model: str, body: dict[str, Any], message: str
) -> None:
    emu, _ = in_process()
    async with emu:
        status, answer = await call(emu, "POST", f"/api/v3/{model}", body)
        assert status == 400
        assert answer["code"] == 400
        assert answer["data"] is None
        assert answer["message"].startswith(message)
        assert emu.stats().tasks_created == 0
        assert emu.balance == Decimal(100)


async def test_video_runs_for_minutes_scaled_by_duration_and_serves_an_mp4() -> None:
    clock = ManualClock()
    config = EmulatorConfig(clock=clock, latency=LatencyProfile.realistic())
    async with Emulator(config, port=None) as emu:
        short = await run_task(emu, VIDEO, {"prompt": "five"})
        long = await run_task(emu, VIDEO, {"prompt": "eight", "duration": 8, "seed": 3})
        await emu.advance(55)
        assert {emu.task(t["id"]).status for t in (short, long)} == {"processing"}  # type: ignore[union-attr]
        await emu.advance(8 / 5 * 180 + 10 - 55)
        records = [emu.task(t["id"]) for t in (short, long)]
        assert all(r is not None and r.status == "completed" for r in records)
        s, lg = (r for r in records if r is not None)
        assert s.finished_at is not None and lg.finished_at is not None
        assert s.started_at is not None and lg.started_at is not None
        assert 60 <= s.finished_at - s.started_at <= 180
        assert 96 <= lg.finished_at - lg.started_at <= 288
        assert (s.output, s.width, s.height, s.price) == ("video", 832, 480, Decimal("0.15"))
        assert lg.price == Decimal("0.24")
        _, body = await call(emu, "GET", f"/api/v3/predictions/{long['id']}/result")
        [url] = body["data"]["outputs"]
        assert url == f"http://emulator.invalid/media/outputs/{long['id']}/0.mp4"
        answer = await emu.handle("GET", url)
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "video/mp4"
        boxes = mp4_boxes(answer.body)
        assert boxes[0] == "ftyp"
        assert {"moov", "mdat"} <= set(boxes)


def mp4_boxes(data: bytes) -> list[str]:
    """The top-level box types of an MP4, checking that their sizes tile the file."""
    kinds, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        assert size >= 8
        kinds.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += size
    assert pos == len(data)
    return kinds


async def test_video_stays_fast_with_the_fast_profile() -> None:
    emu, _ = in_process()
    async with emu:
        data = await run_task(emu, VIDEO, {"prompt": "quick", "duration": 8})
        await emu.advance(0.1)
        record = emu.task(data["id"])
        assert record is not None
        assert record.status == "completed"


async def test_lora_model_takes_loras_and_bills_per_image() -> None:
    emu, _ = in_process()
    async with emu:
        data = await run_task(
            emu,
            LORA,
            {
                "prompt": "a watercolour fox",
                "loras": [{"path": "acme/watercolour", "scale": 0.8}, {"path": "acme/fox"}],
                "num_images": 2,
                "size": "768*512",
            },
        )
        assert data["input"]["loras"][0] == {"path": "acme/watercolour", "scale": 0.8}
        await emu.advance(1)
        _, body = await call(emu, "GET", f"/api/v3/predictions/{data['id']}/result")
        outputs = body["data"]["outputs"]
        assert len(outputs) == 2
        answer = await emu.handle("GET", outputs[1])
        assert answer.headers["Content-Type"] == "image/png"
        assert parse_png(answer.body)[:2] == (768, 512)
        assert emu.stats().charged_usd == Decimal("0.04")


async def test_upscaler_gives_one_image_of_the_target_resolution_at_a_flat_price() -> None:
    emu, _ = in_process()
    async with emu:
        data = await run_task(
            emu,
            UPSCALER,
            {"image": "https://example.com/photo.jpg", "target_resolution": "2k", "num_images": 3},
        )
        await emu.advance(1)
        _, body = await call(emu, "GET", f"/api/v3/predictions/{data['id']}/result")
        [url] = body["data"]["outputs"]
        answer = await emu.handle("GET", url)
        assert parse_png(answer.body)[:2] == (2560, 1440)
        record = emu.task(data["id"])
        assert record is not None
        assert record.dropped_inputs == ("num_images",)
        assert record.prompt == "https://example.com/photo.jpg"  # what identifies the job
        assert record.price == Decimal("0.01")


async def test_unknown_models_run_by_default_and_404_when_refused() -> None:
    emu, _ = in_process(accept_unknown_models=False)
    async with emu:
        status, body = await call(emu, "POST", "/api/v3/acme/nothing", {"prompt": "x"})
        assert status == 404
        assert body["data"] is None
        assert "acme/nothing" in body["message"]
        status, _ = await call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "x"})
        assert status == 200
        assert emu.stats().tasks_created == 1
