"""The model catalogue decodes leniently; only an answer that is not a catalogue raises.

Odd entries are skipped and noted, prices are exact, and only an answer that is not a
catalogue at all raises DecodeError.
"""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.fixture import catalog_bytes
from wavespeed_async._core.catalog import CatalogProblem, decode_models, field_order
from wavespeed_async._core.errors import DecodeError

ENTRY_KEYS = ["model_id", "name", "description", "type", "base_price", "sort_order", "formula",
              "api_schema"]  # fmt: skip


def envelope(data: Any, **extra: Any) -> bytes:
    return json.dumps({"code": 200, "message": "success", "data": data, **extra}).encode()


def test_catalogue_fixture_decodes_every_usable_model_in_order() -> None:
    decoded = decode_models(catalog_bytes())
    assert [m.id for m in decoded.models] == [
        "wavespeed-ai/flux-kontext-dev",
        "wavespeed-ai/flux-kontext-pro/text-to-image",
        "wavespeed-ai/wan-2.1/t2v-480p",
        "wavespeed-ai/flux-dev-lora",
        "wavespeed-ai/real-esrgan",
        "acme/3d-model",
        "acme/odd-text",
        "acme/refs",
        "acme/no-schema",
        "acme/odd-schema",
        "acme/untyped-schema",
    ]


def test_model_record_carries_the_entry_fields() -> None:
    dev = decode_models(catalog_bytes()).by_id()["wavespeed-ai/flux-kontext-dev"]
    assert dev.name == "FLUX.1 Kontext [dev]"
    assert dev.type == "image-to-image"
    assert dev.description == "Edit an image with a text prompt."
    assert dev.base_price == Decimal("0.025")
    assert dev.sort_order == 10
    assert dev.formula is None
    assert dev.input_schema is not None
    assert dev.input_schema["required"] == ["prompt"]
    # x-order-properties, not the properties' own order (which starts with the booleans).
    assert dev.field_order[:3] == ("prompt", "image", "size")
    assert dev.field_order[-2:] == ("enable_base64_output", "enable_safety_checker")


def test_odd_entries_are_skipped_or_degraded_and_each_is_noted() -> None:
    decoded = decode_models(catalog_bytes())
    notes = [str(p) for p in decoded.problems]
    assert "data[11]: no model_id; skipped" in notes
    assert "data[12]: model_id is a number, not a string; skipped" in notes
    assert "data[13]: model_id '../../etc/passwd' is not a model path; skipped" in notes
    assert "data[14]: not an object; skipped" in notes
    assert "data[15] (wavespeed-ai/flux-kontext-dev): a second entry for this id; skipped" in notes
    assert "data[6] (acme/odd-text): sort_order is a string, not an integer; ignored" in notes
    by_id = decoded.by_id()
    # The first entry of a repeated id wins.
    assert by_id["wavespeed-ai/flux-kontext-dev"].name == "FLUX.1 Kontext [dev]"
    assert by_id["acme/no-schema"].input_schema is None
    assert by_id["acme/no-schema"].field_order == ()
    odd = by_id["acme/odd-schema"]
    assert odd.input_schema is None
    assert odd.base_price is None  # `true` is not a price
    assert CatalogProblem(9, "acme/odd-schema", "base_price true is not a price; ignored") in (
        decoded.problems
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.025", Decimal("0.025")),
        ("0.1", Decimal("0.1")),
        # More digits than a float holds: read from the text, nothing is rounded.
        ("0.1000000000000000055511151231257827", Decimal("0.1000000000000000055511151231257827")),
        ("12", Decimal(12)),
        ("1.5e-3", Decimal("0.0015")),
        ('"0.0100"', Decimal("0.0100")),
        ('" 0.5 "', Decimal("0.5")),
        ("0", Decimal(0)),
    ],
)
def test_base_price_is_exact_from_the_numbers_own_digits(raw: str, expected: Decimal) -> None:
    body = f'{{"code":200,"data":[{{"model_id":"a/b","base_price":{raw}}}]}}'.encode()
    price = decode_models(body).models[0].base_price
    assert price == expected
    assert isinstance(price, Decimal)


@pytest.mark.parametrize("raw", ["-1", '"abc"', "true", "{}", "[1]", '"NaN"', '"Infinity"', '""'])
def test_a_base_price_that_is_not_a_price_reads_as_none_and_is_noted(raw: str) -> None:
    body = f'{{"code":200,"data":[{{"model_id":"a/b","base_price":{raw}}}]}}'.encode()
    decoded = decode_models(body)
    assert decoded.models[0].base_price is None
    assert len(decoded.problems) == 1
    assert "base_price" in decoded.problems[0].message


def test_null_fields_read_as_not_given_without_a_note() -> None:
    entry = {"model_id": "a/b", **dict.fromkeys(ENTRY_KEYS[1:])}
    decoded = decode_models(envelope([entry]))
    assert decoded.problems == ()
    model = decoded.models[0]
    assert (model.name, model.description, model.type) == ("", "", "")
    assert model.base_price is None
    assert model.sort_order is None


def test_wrong_field_types_are_ignored_one_by_one() -> None:
    entry = {"model_id": "a/b", "name": 5, "description": ["x"], "type": {}, "sort_order": 1.5,
             "formula": False, "base_price": 0.5}  # fmt: skip
    decoded = decode_models(envelope([entry]))
    model = decoded.models[0]
    assert (model.name, model.description, model.type, model.formula) == ("", "", "", None)
    assert model.sort_order is None
    assert model.base_price == Decimal("0.5")
    assert len(decoded.problems) == 5


@pytest.mark.parametrize(
    "api_schema",
    [
        "text",
        [],
        {"api_schemas": []},
        {"api_schemas": "x"},
        {"api_schemas": [5]},
        {"api_schemas": [{"request_schema": [1, 2]}]},
    ],
)
def test_a_missing_or_odd_schema_gives_no_input_schema(api_schema: Any) -> None:
    decoded = decode_models(envelope([{"model_id": "a/b", "api_schema": api_schema}]))
    assert decoded.models[0].input_schema is None
    assert decoded.models[0].field_order == ()
    assert [p.message for p in decoded.problems] == [
        "api_schema has no request_schema object; inputs will not be checked"
    ]


def test_only_the_first_api_schema_is_read() -> None:
    first = {"request_schema": {"type": "object", "properties": {"a": {}}}}
    second = {"request_schema": {"type": "object", "properties": {"b": {}}}}
    api_schema = {"api_schemas": [first, second]}
    model = decode_models(envelope([{"model_id": "a/b", "api_schema": api_schema}])).models[0]
    assert model.field_order == ("a",)


@pytest.mark.parametrize("code", [200, "200", None])
def test_envelope_with_code_200_or_no_code_is_accepted(code: Any) -> None:
    body = json.dumps({"code": code, "data": [{"model_id": "a/b"}]}).encode()
    assert [m.id for m in decode_models(body).models] == ["a/b"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "not an envelope of JSON"),
        (b"<html>502 Bad Gateway</html>", "not an envelope of JSON"),
        (b"[1, 2]", "not an envelope of JSON"),
        (b'{"code": 500, "message": "internal error", "data": []}', "code 500"),
        (b'{"code": "401", "message": "bad key"}', "code '401'"),
        (b'{"code": 200, "data": {"models": []}}', "not a list"),
        (b'{"code": 200, "data": null}', "not a list"),
        (b'{"code": 200}', "not a list"),
        (b'{"code": 200, "data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "JSON"),
    ],
)
def test_an_answer_that_is_not_a_catalogue_raises_decode_error(body: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match="model catalogue") as info:
        decode_models(body)
    assert words in str(info.value)
    assert len(info.value.body) <= 2000


def test_a_deeply_nested_entry_is_skipped_not_fatal() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"code":200,"data":[{"model_id":"a/b"},' + deep + b"]}"
    try:
        decoded = decode_models(body)
    except DecodeError:
        return  # the decoder may refuse the whole answer for its depth: also fine
    assert [m.id for m in decoded.models] == ["a/b"]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"properties": {"a": {}, "b": {}, "c": {}}}, ("a", "b", "c")),
        ({"properties": {"a": {}, "b": {}, "c": {}}, "x-order-properties": ["c", "a"]},
         ("c", "a", "b")),
        ({"properties": {"a": {}}, "x-order-properties": ["zz", "a", "a", 3]}, ("a",)),
        ({"properties": {"a": {}}, "x-order-properties": "a"}, ("a",)),
        ({"properties": []}, ()),
        ({}, ()),
    ],
)  # fmt: skip
def test_field_order_follows_x_order_properties_then_the_rest(
    schema: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert field_order(schema) == expected


def test_model_records_are_frozen() -> None:
    model = decode_models(envelope([{"model_id": "a/b"}])).models[0]
    with pytest.raises(AttributeError):
        model.id = "c/d"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# Whatever the server sends, decoding ends in a CatalogDecode or a DecodeError.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)


@st.composite
def entries(draw: st.DrawFn) -> Any:
    """Entries shaped like the catalogue's, with any JSON value in any field."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    entry: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(ENTRY_KEYS), unique=True)):
        if key == "model_id":
            entry[key] = draw(st.sampled_from(["a/b", "owner/m/v"]) | json_values)
        elif key == "api_schema":
            schema = draw(json_values)
            entry[key] = draw(
                st.sampled_from(
                    [{"api_schemas": [{"request_schema": schema}]}, {"api_schemas": schema}, schema]
                )
            )
        else:
            entry[key] = draw(json_values)
    return entry


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_decode_error(body: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_models(body)


@given(json_values)
def test_arbitrary_json_decodes_or_raises_decode_error(value: Any) -> None:
    with contextlib.suppress(DecodeError):
        decode_models(msgspec.json.encode(value))


@given(st.one_of(json_values, st.just(200), st.just("200")), st.lists(entries(), max_size=6))
def test_arbitrary_envelopes_decode_or_raise_decode_error(code: Any, data: list[Any]) -> None:
    try:
        decoded = decode_models(msgspec.json.encode({"code": code, "data": data}))
    except DecodeError:
        assert code not in (200, "200", None)
        return
    assert len(decoded.models) <= len(data)
    assert len({m.id for m in decoded.models}) == len(decoded.models)
    for model in decoded.models:
        assert model.base_price is None or model.base_price >= 0
        properties = (model.input_schema or {}).get("properties")
        names = set(properties) if isinstance(properties, dict) else set()
        assert set(model.field_order) <= names
