"""Typed requests and input checks: every bound from the spec table, before anything is sent."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import msgspec
import pytest

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.requests import (
    TYPED_REQUESTS,
    FluxKontextDev,
    FluxKontextProTextToImage,
    TypedRequest,
    UnknownFieldWarning,
    coerce_request,
    validate_input,
    validate_model_path,
)
from wavespeed_async._core.specs import MODEL_SPECS, FieldSpec

DEV = "wavespeed-ai/flux-kontext-dev"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"


# --------------------------------------------------------------------------- the seed pages


def test_defaults_match_the_seed_pages() -> None:
    # Copied from the product pages' parameter tables.
    assert FluxKontextDev(prompt="p").to_input() == {
        "prompt": "p",
        "size": "1024*1024",
        "num_inference_steps": 28,
        "guidance_scale": 2.5,
        "num_images": 1,
        "seed": -1,
        "enable_base64_output": False,
        "enable_safety_checker": True,
    }
    assert FluxKontextProTextToImage(prompt="p").to_input() == {
        "prompt": "p",
        "aspect_ratio": "1:1",
        "num_images": 1,
        "guidance_scale": 3.5,
        "safety_tolerance": "2",
        "enable_base64_output": False,
    }


@pytest.mark.parametrize("cls", [FluxKontextDev, FluxKontextProTextToImage])
def test_typed_request_fields_and_defaults_match_the_spec_table(cls: type[TypedRequest]) -> None:
    spec = MODEL_SPECS[cls.MODEL]
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {f.name: f for f in info.fields}
    spec_names = [f.name for f in spec.fields]
    # Every spec field is a struct field (the pro page has no safety-checker switch, but
    # enable_base64_output is a control field every model takes).
    assert set(spec_names) <= set(fields)
    for f in spec.fields:
        if f.required:
            assert fields[f.name].required
        elif f.default is not None:
            assert fields[f.name].default == f.default


def test_model_paths_and_registry() -> None:
    assert FluxKontextDev.MODEL == DEV
    assert FluxKontextProTextToImage.MODEL == PRO
    assert dict(TYPED_REQUESTS) == {DEV: FluxKontextDev, PRO: FluxKontextProTextToImage}


def test_typed_requests_are_frozen_and_keyword_only() -> None:
    req = FluxKontextDev(prompt="p")
    with pytest.raises(AttributeError):
        req.prompt = "q"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FluxKontextDev("p")  # type: ignore[call-arg]


def test_to_input_leaves_out_none_and_round_trips() -> None:
    req = FluxKontextProTextToImage(prompt="a ship", seed=42, aspect_ratio="16:9")
    body = req.to_input()
    assert body["seed"] == 42
    assert "seed" not in FluxKontextProTextToImage(prompt="x").to_input()
    assert "image" not in FluxKontextDev(prompt="x").to_input()
    assert FluxKontextProTextToImage(**body) == req
    # Through JSON and back, as the emulator would see it.
    assert msgspec.json.decode(msgspec.json.encode(body), type=FluxKontextProTextToImage) == req


def test_to_input_returns_a_fresh_dict() -> None:
    req = FluxKontextDev(prompt="p")
    req.to_input()["prompt"] = "changed"
    assert req.to_input()["prompt"] == "p"


def test_replace_revalidates() -> None:
    with pytest.raises(ValidationError, match="num_images"):
        msgspec.structs.replace(FluxKontextDev(prompt="p"), num_images=9)


# --------------------------------------------------------------------------- bounds from the table


def _cases() -> list[Any]:
    """(model, field, value, ok) at each bound and just outside, from the spec table."""
    cases: list[Any] = []
    for model, spec in MODEL_SPECS.items():
        short = model.rsplit("/", 2)[-1]
        for f in spec.fields:
            values: list[tuple[Any, bool]] = []
            if f.size_range is not None:
                lo, hi = f.size_range
                values = [
                    (f"{lo}*{lo}", True),
                    (f"{hi}*{hi}", True),
                    (f"{lo - 1}*{hi}", False),
                    (f"{lo}*{hi + 1}", False),
                    ("big", False),
                ]
            elif f.choices is not None:
                values = [(c, True) for c in f.choices] + [("0", False), ("", False)]
            elif f.minimum is not None and f.maximum is not None:
                below: float
                above: float
                at_lo: float
                at_hi: float
                if f.type is int:
                    below, above = int(f.minimum) - 1, int(f.maximum) + 1
                    at_lo, at_hi = int(f.minimum), int(f.maximum)
                else:
                    below = math.nextafter(f.minimum, -math.inf)
                    above = math.nextafter(f.maximum, math.inf)
                    at_lo, at_hi = f.minimum, f.maximum
                values = [(at_lo, True), (at_hi, True), (below, False), (above, False)]
            cases.extend(
                pytest.param(model, f, v, ok, id=f"{short}.{f.name}={v!r}") for v, ok in values
            )
    return cases


CASES = _cases()


def test_the_bound_table_covers_every_ranged_field() -> None:
    ranged = {
        (m, f.name)
        for m, s in MODEL_SPECS.items()
        for f in s.fields
        if f.size_range or f.choices or f.minimum is not None
    }
    covered = {(c.values[0], c.values[1].name) for c in CASES}
    assert ranged == covered
    assert len(ranged) >= 9


@pytest.mark.parametrize(("model", "field", "value", "ok"), CASES)
def test_each_bound_is_allowed_and_just_outside_is_refused(
    model: str, field: FieldSpec, value: Any, ok: bool
) -> None:
    cls = TYPED_REQUESTS[model]
    data = {"prompt": "p", field.name: value}
    if ok:
        assert getattr(cls(**data), field.name) == value
        validate_input(model, data)
        return
    for attempt in (lambda: cls(**data), lambda: validate_input(model, data)):
        with pytest.raises(ValidationError) as info:
            attempt()
        err = info.value
        assert err.field == field.name
        assert field.name in str(err)
        assert err.allowed == field.allowed
        assert field.allowed in str(err)


# --------------------------------------------------------------------------- other refusals


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"num_images": 2.0}, "num_images", "expected integer"),
        ({"num_images": True}, "num_images", "expected integer"),
        ({"seed": "7"}, "seed", "expected integer"),
        ({"guidance_scale": "2.5"}, "guidance_scale", "expected number"),
        ({"guidance_scale": math.nan}, "guidance_scale", "finite number"),
        ({"guidance_scale": math.inf}, "guidance_scale", "finite number"),
        ({"enable_safety_checker": 1}, "enable_safety_checker", "boolean"),
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   "}, "prompt", "empty"),
        ({"image": 5}, "image", "expected string"),
        ({"size": "1024x"}, "size", "not a size"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(
    kwargs: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(ValidationError, match=text) as info:
        FluxKontextDev(**{"prompt": "p", **kwargs})
    assert info.value.field == field
    assert field in str(info.value)


def test_a_size_tuple_gets_a_helpful_message() -> None:
    with pytest.raises(ValidationError) as info:
        FluxKontextDev(prompt="p", size=(1024, 768))  # type: ignore[arg-type]
    assert info.value.field == "size"
    assert 'size="1024*768"' in str(info.value)
    assert "512 ~ 1536" in str(info.value)


def test_int_guidance_scale_is_accepted() -> None:
    assert FluxKontextDev(prompt="p", guidance_scale=3).to_input()["guidance_scale"] == 3


@pytest.mark.parametrize("size", ["768x1024", "768 X 1024", "768,1024", "768\u00d71024"])
def test_only_the_documented_w_star_h_size_is_accepted(size: str) -> None:
    with pytest.raises(ValidationError, match='write it "768\\*1024"') as info:
        FluxKontextDev(prompt="p", size=size)
    assert info.value.field == "size"
    with pytest.raises(ValidationError, match="size"):
        validate_input(DEV, {"prompt": "p", "size": size})
    assert FluxKontextDev(prompt="p", size="768*1024").size == "768*1024"


def test_a_misspelt_field_of_a_known_model_warns_and_names_the_right_one() -> None:
    with pytest.warns(UnknownFieldWarning, match="aspect_ration: .*did you mean 'aspect_ratio'"):
        validate_input(PRO, {"prompt": "p", "aspect_ration": "16:9"})
    with pytest.warns(UnknownFieldWarning, match="colour: not a field of"):
        validate_input(DEV, {"prompt": "p", "colour": "red"})


def test_known_and_control_fields_and_other_models_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_input(PRO, {"prompt": "p", "aspect_ratio": "16:9", "enable_sync_mode": True})
        validate_input("someone/other-model", {"anything": 1})


def test_unknown_field_warning_points_at_the_caller() -> None:
    with pytest.warns(UnknownFieldWarning) as record:
        validate_input(PRO, {"prompt": "p", "aspect_ration": "16:9"})
    assert record[0].filename == __file__


# --------------------------------------------------------------------------- plain dicts


def test_validate_input_requires_the_prompt_of_a_known_model() -> None:
    with pytest.raises(ValidationError, match="prompt: required") as info:
        validate_input(DEV, {"image": "https://x/y.png"})
    assert info.value.field == "prompt"


def test_validate_input_lets_unknown_fields_through_with_a_warning() -> None:
    with pytest.warns(UnknownFieldWarning, match="loras"):
        validate_input(DEV, {"prompt": "p", "loras": [{"path": "a", "scale": 1.0}]})


def test_unknown_models_need_no_prompt_but_control_fields_are_booleans() -> None:
    validate_input("someone/upscaler", {"image": "https://x/y.png"})
    validate_input("someone/upscaler", {"prompt": "", "enable_sync_mode": True})
    with pytest.raises(ValidationError) as info:
        validate_input("someone/upscaler", {"enable_base64_output": "yes"})
    assert info.value.field == "enable_base64_output"
    assert "boolean" in str(info.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({1, 2}, "set is not JSON"),
        (b"\x89PNG", "bytes is not JSON"),
        (object(), "object is not JSON"),
        (math.nan, "finite number"),
        ([1, {"a": math.inf}], r"x\[1\]\.a"),
        ({1: "a"}, "string keys"),
    ],
)
def test_values_that_are_not_json_are_refused_naming_the_field(value: Any, text: str) -> None:
    for model in (DEV, "someone/other-model"):
        with pytest.raises(ValidationError, match=text) as info:
            validate_input(model, {"prompt": "p", "x": value})
        assert info.value.field == "x"


def test_deeply_nested_values_are_refused() -> None:
    value: Any = []
    for _ in range(40):
        value = [value]
    with pytest.raises(ValidationError, match="nested"):
        validate_input("a/b", {"x": value})


def test_input_must_be_a_mapping_with_string_keys() -> None:
    with pytest.raises(ValidationError, match="input"):
        validate_input(DEV, ["prompt"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="string field names"):
        validate_input(DEV, {1: "p"})  # type: ignore[dict-item]


# --------------------------------------------------------------------------- coerce_request


def test_coerce_a_typed_request() -> None:
    model, body = coerce_request(FluxKontextDev(prompt="p", seed=3))
    assert model == DEV
    assert body["seed"] == 3
    assert body["prompt"] == "p"


def test_coerce_a_model_path_and_dict_returns_a_deep_copy() -> None:
    inp: dict[str, Any] = {"prompt": "p", "extra": {"k": [1, 2]}, "t": (1, 2)}
    with pytest.warns(UnknownFieldWarning):
        model, body = coerce_request(DEV, inp)
    assert model == DEV
    assert body == {"prompt": "p", "extra": {"k": [1, 2]}, "t": [1, 2]}
    inp["extra"]["k"].append(3)
    body["enable_sync_mode"] = True
    assert body["extra"] == {"k": [1, 2]}
    assert "enable_sync_mode" not in inp


def test_coerce_validates_dicts_for_known_models() -> None:
    with pytest.raises(ValidationError, match="num_inference_steps"):
        coerce_request(DEV, {"prompt": "p", "num_inference_steps": 0})


def test_coerce_refuses_a_typed_request_with_an_input_dict() -> None:
    with pytest.raises(ValidationError, match="either a typed request") as info:
        coerce_request(FluxKontextDev(prompt="p"), {"prompt": "q"})
    assert info.value.field == "input"


def test_coerce_refuses_a_model_path_without_input() -> None:
    with pytest.raises(ValidationError, match="required") as info:
        coerce_request(DEV)
    assert info.value.field == "input"


@pytest.mark.parametrize("bad", [None, 5, {"model": DEV}, FluxKontextDev])
def test_coerce_refuses_what_is_neither_a_path_nor_a_request(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        coerce_request(bad, {"prompt": "p"})
    assert info.value.field == "model"


def test_a_user_defined_typed_request_for_another_model() -> None:
    class Upscale(TypedRequest, frozen=True, kw_only=True):
        MODEL: ClassVar[str] = "someone/upscaler"
        image: str
        scale: int = 2

    assert coerce_request(Upscale(image="https://x/y.png")) == (
        "someone/upscaler",
        {"image": "https://x/y.png", "scale": 2},
    )


def test_a_typed_request_without_a_model_is_a_programming_error() -> None:
    class NoModel(TypedRequest, frozen=True, kw_only=True):
        x: int = 1

    with pytest.raises(TypeError, match="MODEL"):
        NoModel()


@pytest.mark.parametrize(
    "path",
    [
        "wavespeed-ai/flux-kontext-dev",
        "wavespeed-ai/flux-kontext-pro/text-to-image",
        "bytedance/seedream-v4.0/edit",
        "owner_1/model.v2",
    ],
)
def test_valid_model_paths(path: str) -> None:
    assert validate_model_path(path) == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("flux-kontext-dev", "not a model path"),
        ("/wavespeed-ai/flux-kontext-dev", "start with '/'"),
        ("wavespeed-ai/flux-kontext-dev/", "not a model path"),
        ("wavespeed-ai//flux", "not a model path"),
        ("wavespeed-ai/../balance", "not a model path"),
        ("wavespeed-ai/./x", "not a model path"),
        ("wavespeed ai/flux", "not a model path"),
        ("wavespeed-ai/flux?webhook=x", "not a model path"),
        ("wavespeed-ai/flux#frag", "not a model path"),
        ("https://api.wavespeed.ai/api/v3/wavespeed-ai/flux", "URL"),
        ("api/v3/wavespeed-ai/flux", "API endpoint"),
        ("predictions/abc/result", "API endpoint"),
        ("media/upload/binary", "API endpoint"),
        ("a/b/c/d/e/f", "not a model path"),
        ("wavespeed-ai/flüx", "not a model path"),
    ],
)
def test_invalid_model_paths_are_refused_with_the_reason(path: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_model_path(path)
    assert info.value.field == "model"
    assert why in str(info.value)
    assert "owner/model" in str(info.value)
