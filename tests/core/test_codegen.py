"""Typed requests generated from the catalogue import, type-check and build the right bodies.

They type-check under mypy --strict, build the same bodies as the hand-written ones, and
run through the client; nothing the catalogue says can break or inject code into the
generated module.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.fixture import catalog_bytes
from tests.core.strategies import any_json, objects, schemas
from wavespeed_async import Client, FluxKontextDev, FluxKontextProTextToImage, TypedRequest
from wavespeed_async._core.catalog import Model, decode_models
from wavespeed_async._core.codegen import class_names, generate_module
from wavespeed_async.emulator import Emulator

MODELS = decode_models(catalog_bytes()).models
_counter = itertools.count()


def load(source: str, directory: Path) -> ModuleType:
    """Write ``source`` to a file and import it as a fresh module."""
    name = f"generated_models_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    source = generate_module(MODELS, source="https://api.wavespeed.ai")
    return load(source, tmp_path_factory.mktemp("generated"))


def test_every_model_with_a_schema_gets_a_typed_request_class(generated: ModuleType) -> None:
    assert sorted(generated.MODELS) == sorted(
        m.id
        for m in MODELS
        if m.id not in ("acme/no-schema", "acme/odd-schema", "acme/untyped-schema")
    )
    for model_id, cls in generated.MODELS.items():
        assert issubclass(cls, TypedRequest)
        assert model_id == cls.MODEL
    assert generated.MODELS["wavespeed-ai/flux-dev-lora"] is generated.FluxDevLora
    assert sorted(generated.__all__) == generated.__all__
    assert "FluxDevLoraLora" in generated.__all__


def test_generated_kontext_requests_build_the_hand_written_ones_bodies(
    generated: ModuleType,
) -> None:
    ours = generated.FluxKontextDev(prompt="make it red", image="https://x/y.png", seed=7)
    theirs = FluxKontextDev(prompt="make it red", image="https://x/y.png", seed=7)
    assert ours.to_input() == theirs.to_input()
    ours_pro = generated.FluxKontextProTextToImage(prompt="p", aspect_ratio="16:9")
    theirs_pro = FluxKontextProTextToImage(prompt="p", aspect_ratio="16:9").to_input()
    # The hand-written class also carries a control field the catalogue does not list.
    assert theirs_pro.pop("enable_base64_output") is False
    assert ours_pro.to_input() == theirs_pro


def test_fields_follow_the_model_pages_order_and_defaults(generated: ModuleType) -> None:
    cls = generated.FluxKontextDev
    assert cls.__struct_fields__ == MODELS[0].field_order
    assert generated.Wan21T2v480p(prompt="a fox").to_input() == {
        "prompt": "a fox",
        "negative_prompt": "",
        "size": "832*480",
        "duration": 5,
        "num_inference_steps": 30,
        "guidance_scale": 5,
        "flow_shift": 3,
        "seed": -1,
        "enable_safety_checker": True,
    }


def test_a_required_field_is_required_even_when_the_schema_gives_a_default() -> None:
    # Model pages give their example prompt as the default of a required prompt; as a
    # Python default it would send, and bill, the example when the prompt is forgotten.
    from wavespeed_async.emulator import CATALOGUE

    dev = "wavespeed-ai/flux-kontext-dev"
    schema = CATALOGUE[dev].request_schema
    assert schema["properties"]["prompt"].get("default")  # the example, as on the page
    source = generate_module([Model(id=dev, input_schema=dict(schema))])
    module = ModuleType(f"generated_required_{next(_counter)}")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "generated_required.py", "exec"), module.__dict__)  # noqa: S102
        with pytest.raises(TypeError, match="prompt"):
            module.FluxKontextDev(image="https://x/y.png")
        with pytest.raises(msgspec.ValidationError, match="prompt"):
            msgspec.convert({"image": "https://x/y.png"}, module.FluxKontextDev)
        assert module.FluxKontextDev(prompt="p", image="https://x/y.png").guidance_scale == 2.5
    finally:
        del sys.modules[module.__name__]


def test_an_optional_field_without_a_default_is_left_out_of_the_body(generated: ModuleType) -> None:
    body = generated.FluxKontextProTextToImage(prompt="p").to_input()
    assert "seed" not in body  # the server picks one
    assert generated.FluxKontextProTextToImage(prompt="p", seed=3).to_input()["seed"] == 3


def test_lists_of_objects_are_nested_structs_and_become_dicts_in_the_body(
    generated: ModuleType,
) -> None:
    lora = generated.FluxDevLoraLora(path="owner/watercolour", scale=0.8)
    # The fixture's LoRA items list ``scale`` as required: required, default or not.
    with pytest.raises(TypeError, match="scale"):
        generated.FluxDevLoraLora(path="o/x")
    request = generated.FluxDevLora(
        prompt="a fox", loras=[lora, generated.FluxDevLoraLora(path="o/x", scale=1)]
    )
    body = request.to_input()
    assert body["loras"] == [
        {"path": "owner/watercolour", "scale": 0.8},
        {"path": "o/x", "scale": 1},
    ]
    assert generated.FluxDevLora(prompt="x").loras == []
    assert generated.FluxDevLora(prompt="x").loras is not generated.FluxDevLora(prompt="y").loras


def test_names_that_are_not_identifiers_keep_their_wire_names(generated: ModuleType) -> None:
    request = generated.Acme3dModel(prompt="p", my_field=5, class_="b")
    body = request.to_input()
    assert body["my-field"] == 5
    assert body["class"] == "b"
    assert body["weights"] == [0.5, 0.5]
    assert "my_field" not in body


def test_constraints_are_enforced_when_data_is_converted(generated: ModuleType) -> None:
    cls = generated.Wan21T2v480p
    assert msgspec.convert({"prompt": "x", "duration": 10}, cls).duration == 10
    for bad in ({"prompt": "x", "duration": 7}, {"prompt": ""}, {"prompt": "x", "seed": -2}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, cls)
    with pytest.raises(msgspec.ValidationError, match="loras"):
        msgspec.convert({"prompt": "x", "loras": [{"path": "a"}] * 5}, generated.FluxDevLora)


def test_descriptions_with_quotes_backslashes_and_escapes_stay_text(generated: ModuleType) -> None:
    doc = generated.Acme3dModel.__doc__
    assert doc is not None
    assert 'A description with """ quotes, a backslash \\ and a control' in doc
    assert "\x1b" not in doc
    assert "a control \\x1b[31m character" in doc  # the escape, as text
    assert generated.OddText.__doc__.startswith('Odd text model: Triple quotes """ and a trailing')


def test_the_header_names_the_catalogue_without_credentials_and_the_skipped_models() -> None:
    source = generate_module(MODELS, source="https://user:secret@api.example.com:8443/x?key=k#f")
    header = source.split('"""', 1)[0]
    assert "https://api.example.com:8443/x" in header
    assert "secret" not in source
    assert "key=k" not in source
    assert "Do not edit" in header
    assert "acme/no-schema (the model has no request schema" in header
    assert "acme/untyped-schema (the schema does not say type: object" in header


def test_credentials_in_a_source_that_is_not_a_url_are_left_out() -> None:
    source = generate_module(MODELS[:1], source="user:hunter2@api.wavespeed.ai?key=k")
    assert "hunter2" not in source
    assert "key=k" not in source
    assert "# catalogue (api.wavespeed.ai)." in source


def test_a_model_listed_twice_gets_one_class() -> None:
    source = generate_module([MODELS[0], MODELS[1], MODELS[0]])
    assert source.count("class FluxKontextDev(") == 1
    assert "# 2 models." in source
    assert source.index("class FluxKontextDev(") < source.index("class FluxKontextProTextToImage(")


def test_output_is_the_same_for_the_same_catalogue() -> None:
    assert generate_module(MODELS) == generate_module(MODELS)
    dated = generate_module(MODELS, generated_on="2026-01-02")
    assert "# Generated on 2026-01-02." in dated


def test_class_names_are_unique_identifiers_with_the_owner_only_when_needed() -> None:
    models = [
        Model(id="wavespeed-ai/flux-dev"),
        Model(id="other/flux-dev"),
        Model(id="wavespeed-ai/flux-kontext-pro/text-to-image"),
        Model(id="acme/3d"),
        Model(id="3rd/4k-up"),
        Model(id="acme/typed-request"),
        Model(id="acme/models"),
        Model(id="acme/exception"),
    ]
    names = class_names(models)
    assert names == {
        "wavespeed-ai/flux-dev": "WavespeedAiFluxDev",
        "other/flux-dev": "OtherFluxDev",
        "wavespeed-ai/flux-kontext-pro/text-to-image": "FluxKontextProTextToImage",
        "acme/3d": "Acme3d",
        "3rd/4k-up": "Model3rd4kUp",
        "acme/typed-request": "TypedRequest2",
        "acme/models": "Models",
        "acme/exception": "Exception2",
    }
    assert all(n.isidentifier() for n in names.values())


@pytest.mark.anyio
async def test_a_generated_request_runs_through_the_client(
    generated: ModuleType, client: Client, emulator: Emulator
) -> None:
    request = generated.FluxKontextProTextToImage(prompt="a fox", aspect_ratio="16:9")
    prediction = await client.run(request)
    assert prediction.ok
    assert prediction.model == "wavespeed-ai/flux-kontext-pro/text-to-image"
    assert emulator.stats().tasks[prediction.id].model == prediction.model


@pytest.mark.e2e
def test_generated_module_passes_mypy_strict(tmp_path: Path) -> None:
    path = tmp_path / "wavespeed_models.py"
    path.write_text(generate_module(MODELS, source="https://api.wavespeed.ai"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


# ---------------------------------------------------------------------------------------
# Whatever the catalogue says, the module compiles and its classes are valid msgspec types.

TEXT = st.text(max_size=12) | st.sampled_from(
    ['"""', "\\", '\\"', "'''", "\x1b[2J", "\u202e", "\n"]
)


@st.composite
def catalogue_models(draw: st.DrawFn) -> Model:
    model_id = draw(st.sampled_from(["a/b", "a/c", "x/b", "owner/3d/v2", "o/class", "o/to-input"]))
    schema: Any = draw(objects(schemas(exact=False), exact=False) | any_json)
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        # A field whose name and description are odd text.
        odd = {draw(TEXT): {"type": "string", "description": draw(TEXT)}}
        schema = {**schema, "properties": {**odd, **schema["properties"]}}
    return Model(
        id=model_id,
        name=draw(TEXT),
        description=draw(TEXT),
        type=draw(TEXT),
        input_schema=schema if isinstance(schema, dict) else None,
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(catalogue_models(), max_size=4, unique_by=lambda m: m.id), TEXT)
def test_any_catalogue_gives_a_module_that_imports(models: list[Model], source: str) -> None:
    code = generate_module(models, source=source)
    module = ModuleType("generated_fuzz")
    sys.modules[module.__name__] = module  # msgspec resolves annotations through it
    try:
        exec(compile(code, "generated_fuzz.py", "exec"), module.__dict__)  # noqa: S102 - ours
        for cls in module.MODELS.values():
            msgspec.json.Decoder(cls)  # its annotations are types msgspec accepts
            assert isinstance(cls.__doc__, str)
    finally:
        del sys.modules[module.__name__]
