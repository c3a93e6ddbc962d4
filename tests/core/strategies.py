"""Hypothesis strategies for request schemas and the inputs and catalogues built on them."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

NAMES = ["a", "b", "c", "prompt"]
PATTERNS = [r"^\d+\*\d+$", "x", "^a", "b$", "[0-9]"]
LEAF_KINDS = ["string", "integer", "number", "boolean", "null", "list", "enum", "const", "none"]
#: Object keywords the checker does not evaluate (each can only make it accept more).
INEXACT_OBJECT_KEYWORDS: list[dict[str, Any]] = [
    {},
    {"minProperties": 2},
    {"patternProperties": {"^z": {"type": "integer"}}},
    {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
    {"not": {"required": ["c"]}},
    {"if": {"required": ["a"]}, "then": {"required": ["b"]}},
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(-20, 20, allow_nan=False).filter(lambda f: not f.is_integer())
    | st.sampled_from(["", "x", "a", "ab", "512*512", "1024*1024", "b", "0"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*NAMES, "zz"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def bounds(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    number: st.SearchStrategy[float] = st.integers(-10, 10)
    if kind != "integer":
        number |= st.floats(-10, 10)
    keys = st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"])
    for key in draw(st.lists(keys, unique=True, max_size=2)):
        out[key] = draw(number)
    if out.get("minimum", -math.inf) > out.get("maximum", math.inf):
        # Bounds no value meets are a schema's slip, left unchecked: tested in test_schema.
        out["minimum"], out["maximum"] = out["maximum"], out["minimum"]
    return out


@st.composite
def leaf_schemas(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(LEAF_KINDS))
    if kind == "string":
        schema: dict[str, Any] = {"type": "string"}
        if draw(st.booleans()):
            schema["minLength"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(schema.get("minLength", 0), 5))
        if draw(st.booleans()):
            schema["pattern"] = draw(st.sampled_from(PATTERNS))
        return schema
    if kind in ("integer", "number"):
        return {"type": kind, **draw(bounds(kind))}
    if kind == "list":
        types = draw(st.lists(st.sampled_from(LEAF_KINDS[:5]), min_size=1, max_size=3, unique=True))
        if set(types) - {"null"} == {"string"}:
            # Bounds on a string alone are WaveSpeed's "W*H" sizes, not JSON Schema's
            # (ignored there): tested on their own in test_schema.
            return {"type": types}
        return {"type": types, **draw(bounds("number"))}
    if kind == "enum":
        return {"enum": draw(st.lists(json_scalars, min_size=1, max_size=4))}
    if kind == "const":
        return {"const": draw(json_scalars)}
    if kind == "none":
        return {}
    return {"type": kind}


def schemas(*, exact: bool) -> st.SearchStrategy[dict[str, Any]]:
    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        arrays = st.builds(
            lambda items, lo, hi: {"type": "array", "items": items, **lo, **hi},
            inner,
            st.sampled_from([{}, {"minItems": 1}]),
            st.sampled_from([{}, {"maxItems": 2}]),
        )
        combinators = st.builds(
            lambda key, branches: {key: branches},
            st.sampled_from(["anyOf", "oneOf", "allOf"]),
            st.lists(inner, min_size=1, max_size=3),
        )
        return arrays | objects(inner, exact=exact) | combinators

    return st.recursive(leaf_schemas(), extend, max_leaves=6)


def objects(
    values: st.SearchStrategy[dict[str, Any]], *, exact: bool
) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        properties = {name: draw(values) for name in names}
        required = draw(st.lists(st.sampled_from(names), unique=True))
        for name in names:
            # The checker takes a field with a default as optional: give defaults only to
            # fields JSON Schema also takes as optional.
            if name not in required and draw(st.booleans()):
                properties[name] = {
                    **properties[name],
                    "default": draw(json_values.filter(lambda v: v is not None)),
                }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": draw(st.booleans()),
        }
        if not exact:
            schema.update(draw(st.sampled_from(INEXACT_OBJECT_KEYWORDS)))
        return schema

    return build()


@st.composite
def instances(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    """Inputs near the schema: its field names (and a stranger) with values of any kind."""
    names = [*schema["properties"], "zz"]
    keys = draw(st.lists(st.sampled_from(names), unique=True))
    return {key: draw(json_values) for key in keys}


any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["object", "string", "integer", "#", "#/properties", "$ref", "properties"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["type", "properties", "required", "items", "enum", "const", "minimum", "maximum",
             "exclusiveMinimum", "minLength", "maxItems", "pattern", "anyOf", "oneOf", "allOf",
             "$ref", "additionalProperties", "default", "nullable", "x-order-properties", "a"]
        ) | st.text(max_size=5),
        inner,
        max_size=5,
    ),
    max_leaves=30,
)  # fmt: skip
