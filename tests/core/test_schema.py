"""A compiled request schema refuses what the model does not take, with a clear message.

What it refuses: a misspelt key, a missing field, a value of the wrong type or out of range;
the message names the model, the field and what is allowed. What it cannot understand, it
does not check.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.fixture import catalog_models
from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.schema import (
    NO_VALUE,
    Checker,
    compare_with_spec,
    compile_schema,
)
from wavespeed_async._core.specs import FLUX_KONTEXT_DEV, FLUX_KONTEXT_PRO_T2I

MODELS = catalog_models()


def checker_of(model_id: str) -> Checker:
    return compile_schema(model_id, MODELS[model_id].input_schema)


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


def problems(schema: dict[str, Any], value: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.field, str(p)) for p in compile_schema("acme/m", schema).problems(value)]


DEV = "wavespeed-ai/flux-kontext-dev"
LORA = "wavespeed-ai/flux-dev-lora"
WAN = "wavespeed-ai/wan-2.1/t2v-480p"


# ---------------------------------------------------------------------------------------
# Unknown keys: the API would drop them and bill the task with the defaults.


def test_misspelt_key_is_refused_with_did_you_mean_and_the_model_named() -> None:
    with pytest.raises(ValidationError) as info:
        checker_of(DEV).check({"prompt": "a cat", "guidence_scale": 3})
    err = info.value
    assert err.field == "guidence_scale"
    assert "did you mean 'guidance_scale'?" in str(err)
    assert DEV in str(err)
    assert "bill the task with the defaults" in str(err)
    assert err.allowed is not None and "guidance_scale" in err.allowed


def test_unknown_key_without_a_close_field_is_refused_without_a_guess() -> None:
    [err] = checker_of(DEV).problems({"prompt": "a cat", "colour": "red"})
    assert err.field == "colour"
    assert "did you mean" not in str(err)
    assert str(err).startswith(f"colour: not a field of {DEV}; ")


def test_control_fields_are_known_to_every_model_but_must_be_booleans() -> None:
    checker = checker_of(WAN)  # declares enable_safety_checker only
    checker.check({"prompt": "x", "enable_sync_mode": True, "enable_base64_output": False})
    [err] = checker.problems({"prompt": "x", "enable_sync_mode": "yes"})
    assert err.field == "enable_sync_mode"
    assert "expected a boolean" in str(err)
    assert err.allowed == "true or false"


def test_a_boolean_control_field_passes_whatever_the_schema_says_of_it() -> None:
    odd = {"type": "string", "enum": ["x"]}
    schema = obj(
        {"prompt": {"type": "string"}, "enable_sync_mode": odd, "enable_base64_output": odd}
    )
    assert problems(schema, {"prompt": "p", "enable_sync_mode": True}) == []
    assert problems(schema, {"prompt": "p", "enable_base64_output": False}) == []
    [(field, _)] = problems(schema, {"prompt": "p", "enable_sync_mode": 5})
    assert field == "enable_sync_mode"


def test_a_misspelt_control_field_gets_a_did_you_mean() -> None:
    [err] = checker_of(WAN).problems({"prompt": "x", "enable_sync_mod": True})
    assert "did you mean 'enable_sync_mode'?" in str(err)


def test_additional_properties_true_admits_other_keys() -> None:
    schema = obj({"a": {"type": "string"}}, additionalProperties=True)
    assert problems(schema, {"a": "x", "anything": 1}) == []


def test_additional_properties_schema_checks_other_keys() -> None:
    schema = obj({"a": {"type": "string"}}, additionalProperties={"type": "integer"})
    assert problems(schema, {"a": "x", "b": 1}) == []
    [(field, message)] = problems(schema, {"a": "x", "b": "y"})
    assert field == "b"
    assert "expected an integer" in message


# ---------------------------------------------------------------------------------------
# Required fields and defaults.


def test_missing_required_field_is_refused_naming_what_is_allowed() -> None:
    [err] = checker_of(DEV).problems({"image": "https://x/y.png"})
    assert err.field == "prompt"
    assert str(err) == f"prompt: required by {DEV}; allowed: a string"


def test_a_required_field_is_required_even_with_a_default() -> None:
    # The model pages give their example prompt as the default of a required prompt.
    schema = obj(
        {"a": {"type": "integer", "default": 1}, "b": {"type": "string"}, "c": {"default": 2}},
        required=["a", "b"],
    )
    checker = compile_schema("acme/m", schema)
    assert checker.required == ("a", "b")
    assert checker.fields["a"].required is True
    assert checker.fields["c"].required is False
    assert [p.field for p in checker.problems({"b": "x"})] == ["a"]
    assert checker.problems({"a": 3, "b": "x"}) == []


# ---------------------------------------------------------------------------------------
# Types, ranges, lengths, choices.

TYPES = obj(
    {
        "s": {"type": "string"},
        "i": {"type": "integer"},
        "n": {"type": "number"},
        "b": {"type": "boolean"},
        "a": {"type": "array"},
        "o": {"type": "object"},
        "z": {"type": "null"},
        "si": {"type": ["string", "integer"]},
        "sn": {"type": ["string", "null"]},
        "any": {"description": "no type: anything"},
    }
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("s", "text"), ("s", ""), ("i", 3), ("i", -(2**70)), ("n", 3), ("n", 2.5), ("b", False),
        ("a", []), ("a", [1, "x"]), ("a", (1, 2)), ("o", {}), ("o", {"k": 1}), ("z", None),
        ("si", "x"), ("si", 5), ("sn", "x"), ("sn", None), ("any", None), ("any", [{}]),
    ],
)  # fmt: skip
def test_values_of_an_allowed_json_type_pass(field: str, value: Any) -> None:
    assert problems(TYPES, {field: value}) == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("s", 5, "expected a string for acme/m, got an integer 5 (write it as '5', a string)"),
        ("i", True, "expected an integer for acme/m, got a boolean True"),
        ("i", 2.0, "expected an integer for acme/m, got a number 2.0 (write it as 2, an integer)"),
        ("i", "3", "got a string '3' (write it as 3, a number, not a string)"),
        ("n", False, "expected a number for acme/m, got a boolean False"),
        ("n", "2.5", "(write it as 2.5, a number, not a string)"),
        ("n", float("nan"), "nan is not a finite number"),
        ("n", float("inf"), "inf is not a finite number"),
        ("b", 1, "expected a boolean"),
        ("a", "x", "expected a list"),
        ("a", {"k": 1}, "expected a list"),
        ("o", [1], "expected an object"),
        ("z", 0, "expected null"),
        ("si", 1.5, "expected a string or an integer"),
        ("s", None, "null is not allowed by acme/m (leave it out to get the model's default)"),
        ("s", b"bytes", "expected a string for acme/m, got a bytes"),
        ("any", {1, 2}, None),  # not JSON, but the schema allows any value
    ],
)
def test_values_of_another_type_are_refused(field: str, value: Any, words: str | None) -> None:
    found = problems(TYPES, {field: value})
    if words is None:
        assert found == []
        return
    [(where, message)] = found
    assert where == field
    assert words in message
    assert "; allowed: " in message


def test_bounds_are_inclusive_and_exclusive_as_the_schema_says() -> None:
    schema = obj(
        {
            "inc": {"type": "number", "minimum": 1, "maximum": 20},
            "exc": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "old": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 4},
        }
    )
    assert problems(schema, {"inc": 1, "exc": 0.5, "old": 1}) == []
    assert problems(schema, {"inc": 20.0, "exc": 1e-9, "old": 4}) == []
    found = problems(schema, {"inc": 25, "exc": 1, "old": 0})
    assert found == [
        ("inc", "inc: 25 is above acme/m's maximum; allowed: a number 1 ~ 20"),
        (
            "exc",
            "exc: 1 is not below acme/m's maximum; allowed: a number more than 0 and less than 1",
        ),
        (
            "old",
            "old: 0 is not above acme/m's minimum; allowed: an integer more than 0 and at most 4",
        ),
    ]
    assert problems(schema, {"inc": 0.5}) == [
        ("inc", "inc: 0.5 is below acme/m's minimum; allowed: a number 1 ~ 20")
    ]


def test_string_length_and_pattern() -> None:
    schema = obj(
        {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 5},
            "size": {"type": "string", "pattern": r"^\d+\*\d+$"},
        }
    )
    assert problems(schema, {"prompt": "abcde", "size": "1024*768"}) == []
    short, mismatch = problems(schema, {"prompt": "", "size": "1024x768"})
    assert short == (
        "prompt",
        "prompt: '' is shorter than acme/m's minimum; allowed: a string of 1 ~ 5 characters",
    )
    assert mismatch == (
        "size",
        "size: '1024x768' does not match acme/m's pattern; allowed: a string matching "
        + repr(r"^\d+\*\d+$"),
    )
    [(_, message)] = problems(schema, {"prompt": "x" * 100})
    assert "100 characters is longer than acme/m's maximum" in message
    assert "x" * 20 not in message  # a long value is not echoed


def test_enum_names_the_choices_and_hints_at_the_written_form() -> None:
    checker = checker_of(WAN)
    checker.check({"prompt": "x", "duration": 10})
    [err] = checker.problems({"prompt": "x", "duration": 7})
    assert err.field == "duration"
    assert str(err) == f"duration: 7 is not one of the choices of {WAN}; allowed: one of 5, 10"
    assert err.allowed == "one of 5, 10"
    [err] = checker.problems({"prompt": "x", "duration": "5"})
    assert "(write it as 5, a number, not a string)" in str(err)
    pro = checker_of("wavespeed-ai/flux-kontext-pro/text-to-image")
    [err] = pro.problems({"prompt": "x", "safety_tolerance": 2})
    assert "(write it as '2', a string)" in str(err)
    [err] = checker.problems({"prompt": "x", "size": "832x480"})
    assert "(did you mean '832*480'?)" in str(err)


def test_a_huge_enum_is_checked_in_full_but_named_in_short() -> None:
    schema = obj({"e": {"type": "integer", "enum": list(range(100_000))}})
    assert problems(schema, {"e": 99_999}) == []
    [(field, message)] = problems(schema, {"e": -1})
    assert field == "e"
    assert message.endswith("allowed: one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, "
                            "15, 16, 17, 18, 19, \u2026 (100000 choices)")  # fmt: skip


def test_enum_and_const_compare_as_json_does() -> None:
    schema = obj(
        {
            "e": {"enum": [1, "a", None, [1, 2], {"k": True}]},
            "c": {"const": False},
            "n": {"type": "number", "enum": [1, 2.5]},
        }
    )
    accepted: list[Any] = [1, 1.0, "a", None, [1, 2], {"k": True}]
    for value in accepted:
        assert problems(schema, {"e": value}) == []
    refused: list[Any] = [True, "1", [2, 1], {"k": 1}, [1, 2, 3]]
    for value in refused:
        assert len(problems(schema, {"e": value})) == 1, value
    assert problems(schema, {"c": False, "n": 1.0}) == []
    assert [f for f, _ in problems(schema, {"c": 0, "n": True})] == ["c", "n"]
    [(_, message)] = problems(schema, {"c": True})
    assert message == "c: True is not the only value of acme/m; allowed: exactly False"


def test_null_passes_only_where_the_schema_allows_it() -> None:
    schema = obj(
        {
            "plain": {"type": "integer", "default": 3},
            "nullable": {"type": "integer", "nullable": True},
            "null_default": {"type": "integer", "default": None},
            "typed": {"type": ["integer", "null"]},
            "enum": {"enum": ["a", None]},
        }
    )
    assert (
        problems(schema, {"nullable": None, "null_default": None, "typed": None, "enum": None})
        == []
    )
    [(field, message)] = problems(schema, {"plain": None})
    assert field == "plain"
    assert message == (
        "plain: null is not allowed by acme/m (leave it out to get the default, 3); "
        "allowed: an integer"
    )


# ---------------------------------------------------------------------------------------
# Arrays and nested objects: paths such as loras[1].scale.


def test_nested_objects_in_arrays_are_checked_with_indexed_paths() -> None:
    checker = checker_of(LORA)
    checker.check({"prompt": "x", "loras": [{"path": "a/b", "scale": 0.5}]})
    found = checker.problems(
        {
            "prompt": "x",
            "loras": [
                {"path": "a/b", "scale": 0.5},
                {"path": "c/d", "scale": 9},
                {"pth": "e/f", "scale": 1},
                "not an object",
            ],
        }
    )
    assert [p.field for p in found] == [
        "loras[1].scale",
        "loras[2].pth",
        "loras[2].path",
        "loras[3]",
    ]
    assert [str(p) for p in found] == [
        f"loras[1].scale: 9 is above {LORA}'s maximum; allowed: a number 0 ~ 4",
        f"loras[2].pth: not a field of an item of {LORA}'s loras (did you mean 'path'?); "
        "the API would ignore it and bill the task with the defaults; "
        "allowed: the fields path, scale",
        f"loras[2].path: required by an item of {LORA}'s loras; allowed: a string",
        f"loras[3]: expected an object for {LORA}, got a string 'not an object'; "
        "allowed: an object with the fields path, scale",
    ]


def test_array_length_bounds() -> None:
    checker = checker_of(LORA)
    [err] = checker.problems({"prompt": "x", "loras": [{"path": "a", "scale": 1}] * 5})
    assert err.field == "loras"
    assert (
        str(err)
        == f"loras: 5 items is more than {LORA}'s maximum; allowed: a list of at most 4 items"
    )
    schema = obj({"w": {"type": "array", "items": {"type": "number"}, "minItems": 1}})
    [(field, message)] = problems(schema, {"w": []})
    assert "0 items is fewer than acme/m's minimum" in message
    [(field, message)] = problems(schema, {"w": [1, "2"]})
    assert field == "w[1]"


def test_nested_object_property_paths_are_dotted() -> None:
    schema = obj({"opts": {"type": "object", "properties": {"mode": {"enum": ["a", "b"]}}}})
    [(field, message)] = problems(schema, {"opts": {"mode": "c"}})
    assert field == "opts.mode"
    [(field, message)] = problems(schema, {"opts": {"mod": "a"}})
    assert field == "opts.mod"
    assert "not a field of acme/m's opts (did you mean 'mode'?)" in message


# ---------------------------------------------------------------------------------------
# problems() reports everything at once; check() raises the first.


def test_problems_lists_every_problem_and_check_raises_the_first() -> None:
    bad = {"guidence_scale": 3, "num_images": 9, "seed": "1"}
    checker = checker_of(DEV)
    found = checker.problems(bad)
    assert [p.field for p in found] == ["guidence_scale", "num_images", "seed", "prompt"]
    assert all(isinstance(p, ValidationError) and isinstance(p, ValueError) for p in found)
    with pytest.raises(ValidationError) as info:
        checker.check(bad)
    assert info.value.field == "guidence_scale"


def test_an_input_that_is_not_a_dict_is_refused_as_a_whole() -> None:
    [err] = checker_of(DEV).problems(["prompt"])  # type: ignore[arg-type]
    assert err.field == "input"
    assert f"a dict of {DEV}'s inputs" in str(err)


def test_names_the_server_chose_reach_a_message_escaped() -> None:
    schema = obj({"bad\x1b[31mname": {"type": "string"}}, required=["bad\x1b[31mname"])
    checker = compile_schema("acme/m\u202e", schema)
    [err] = checker.problems({})
    assert err.field == "bad\x1b[31mname"  # the path itself is exact, for programs
    assert "\x1b" not in str(err)
    assert "\u202e" not in str(err)
    assert "bad\\x1b[31mname" in str(err)


def test_names_the_server_chose_reach_the_reason_escaped() -> None:
    # The reason is logged at submit and printed by ``wavespeed-async schema``.
    odd = {"multipleOf": 2, "items": {"not": {}}}
    schema = obj({"a\x1b]0;owned\x07": {"properties": {"b\x1b[2J": odd}}})
    reason = compile_schema("acme/m", schema).reason
    assert reason is not None and "multipleOf is not checked" in reason
    assert reason.isprintable()
    assert "a\\x1b]0;owned\\x07['b\\x1b[2J']: multipleOf" in reason


# ---------------------------------------------------------------------------------------
# Fail open: what is not understood is not checked, and the checker says so.


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (None, "the model has no request schema"),
        ("text", "the schema is a string, not an object"),
        ([1], "the schema is a list, not an object"),
        ({"properties": {"a": {"type": "string"}}}, "does not say type: object"),
        ({"type": "string"}, "does not say type: object"),
        ({"type": "object"}, "lists no properties"),
        ({"type": "object", "properties": {}}, "lists no properties"),
        ({"$ref": "https://example.com/schema.json"}, "does not resolve"),
        ({"$ref": "#/nowhere"}, "does not resolve"),
    ],
)
def test_a_schema_it_cannot_understand_checks_nothing(schema: Any, reason: str) -> None:
    checker = compile_schema("acme/m", schema)
    assert checker.uncheckable
    assert not checker.exact
    assert checker.reason is not None and reason in checker.reason
    assert "nothing is checked" in checker.reason
    assert checker.fields == {}
    checker.check({"anything": object(), "prompt": 5})


def test_combinators_at_the_top_turn_off_only_the_unknown_key_check() -> None:
    schema = obj(
        {"prompt": {"type": "string"}},
        required=["prompt"],
        anyOf=[{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {}}}],
    )
    checker = compile_schema("acme/m", schema)
    assert not checker.uncheckable
    assert not checker.exact
    assert checker.reason is not None and "unknown input keys are not refused" in checker.reason
    checker.check({"prompt": "x", "a": 1})
    checker.check({"prompt": "x", "whatever": 1})
    assert [p.field for p in checker.problems({"prompt": 5})] == ["prompt"]
    assert [p.field for p in checker.problems({})] == ["prompt"]


def test_pattern_properties_admit_keys_so_unknown_keys_pass() -> None:
    schema = obj({"a": {"type": "string"}}, patternProperties={"^x_": {"type": "integer"}})
    checker = compile_schema("acme/m", schema)
    checker.check({"a": "s", "x_1": "not checked either"})
    assert checker.reason is not None and "patternProperties" in checker.reason


def test_a_field_it_cannot_understand_is_unchecked_and_the_rest_still_checked() -> None:
    checker = checker_of("acme/odd-text")
    assert not checker.uncheckable
    assert not checker.exact
    assert checker.reason == "mode: oneOf has a branch that is not understood; not checked"
    checker.check({"prompt": "x", "mode": {"any": "thing"}})
    assert [p.field for p in checker.problems({"prompt": "x", "mod": 1})] == ["mod"]
    assert [p.field for p in checker.problems({"prompt": 1, "mode": 1})] == ["prompt"]


@pytest.mark.parametrize(
    ("prop", "accepted", "note"),
    [
        ({"type": "file"}, 5, "type 'file' is not understood"),
        ({"type": "string", "pattern": "(?<name>x)"}, "y", "is not a Python regex"),
        ({"type": "array", "items": [{"type": "string"}]}, [5], "tuple form"),
        ({"$ref": "#/$defs/Missing"}, 5, "does not resolve"),
        ({"$ref": "other.json#/x"}, 5, "does not resolve"),
        ({"type": "integer", "minimum": "1"}, 0, "minimum '1' is not a number"),
        ({"type": "string", "maxLength": -1}, "abc", "maxLength -1 is not a count"),
        ({"type": "integer", "multipleOf": 3}, 4, "multipleOf is not checked"),
        ({"type": "string", "not": {"const": "x"}}, "x", "not is not checked"),
        ({"anyOf": [{"type": "string"}, {"$ref": "x.json"}]}, 5, "anyOf has a branch"),
        ({"enum": "abc"}, "z", "enum is not a list"),
        ({"enum": []}, "z", "enum lists no value"),
        ({"type": "integer", "minimum": 10, "maximum": 1}, 5, "minimum 10 above maximum 1"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "ab", "min_length 3 above"),
        ({"type": "array", "minItems": 2, "maxItems": 1}, [1], "min_items 2 above"),
    ],
)
def test_a_keyword_it_cannot_evaluate_is_noted_and_never_refuses(
    prop: dict[str, Any], accepted: Any, note: str
) -> None:
    checker = compile_schema("acme/m", obj({"p": prop}))
    assert not checker.uncheckable
    assert not checker.exact
    assert checker.reason is not None and note in checker.reason
    checker.check({"p": accepted})


@pytest.mark.parametrize(
    "pattern", [r"^(a+)+$", r"^(\w+\s?)*$", r"(a|aa)*b", r"^(x)\1$", r"(?=(a*)*)b"]
)
def test_a_pattern_that_could_backtrack_for_minutes_is_not_run(pattern: str) -> None:
    # A catalogue's pattern runs on the event loop at every submit: ``^(a+)+$`` alone
    # takes seconds on 30 characters and doubles with each one more.
    checker = compile_schema("acme/m", obj({"p": {"type": "string", "pattern": pattern}}))
    assert checker.reason is not None and "could backtrack" in checker.reason
    assert checker.problems({"p": "a" * 40 + "!"}) == []


def test_local_refs_are_resolved() -> None:
    checker = checker_of("acme/refs")
    assert checker.exact, checker.reason
    size = checker.fields["size"]
    assert size.enum == ("512*512", "1024*1024")
    assert size.default == "1024*1024"
    checker.check({"prompt": "x", "size": "512*512", "steps": None})
    checker.check({"prompt": "x", "steps": 4})
    found = checker.problems({"prompt": "x", "size": "2048*2048", "steps": 0})
    assert [p.field for p in found] == ["size", "steps"]
    assert "matches none of acme/refs's forms; allowed: an integer at least 1 or null" in str(
        found[1]
    )


def test_a_ref_to_itself_is_not_followed_forever() -> None:
    kids = {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    node = {"type": "object", "properties": {"kids": kids}}
    schema = obj({"tree": {"$ref": "#/$defs/Node"}}, **{"$defs": {"Node": node}})
    checker = compile_schema("acme/m", schema)
    assert checker.reason is not None and "refers to itself" in checker.reason
    checker.check({"tree": {"kids": [{"kids": [{"anything": 1}]}]}})
    assert [p.field for p in checker.problems({"tree": {"kids": 5}})] == ["tree.kids"]


def test_a_combinator_at_the_top_is_evaluated_and_its_problem_names_the_input() -> None:
    schema = obj({"a": {"type": "integer"}}, oneOf=[{"required": ["a"]}, {"required": ["b"]}])
    checker = compile_schema("acme/m", schema)
    checker.check({"a": 1})
    [err] = checker.problems({"a": 1, "b": 2})
    assert err.field == "input"
    assert str(err).startswith("input: {'a': 1, 'b': 2} matches 2 of acme/m's forms")


def test_one_of_needs_exactly_one_branch_and_all_of_every_branch() -> None:
    schema = obj(
        {
            "one": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
            "all": {"allOf": [{"type": "integer"}, {"minimum": 1}]},
        }
    )
    assert problems(schema, {"one": 3, "all": 2}) == []
    assert problems(schema, {"one": 10.5}) == []
    [(_, message)] = problems(schema, {"one": 12})
    assert "12 matches 2 of acme/m's forms" in message
    [(_, message)] = problems(schema, {"one": "x"})
    assert "matches none of acme/m's forms" in message
    assert [f for f, _ in problems(schema, {"all": 0})] == ["all"]


def test_a_schema_nested_past_the_depth_limit_compiles_and_fails_open() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"x": schema}}
    checker = compile_schema("acme/m", schema)
    assert checker.reason is not None and "nested too deeply" in checker.reason
    value: Any = 5
    for _ in range(200):
        value = {"x": value}
    checker.check(value)


# ---------------------------------------------------------------------------------------
# Introspection and agreement with the hand-written specs.


def test_checker_exposes_fields_types_bounds_enums_defaults_and_required() -> None:
    checker = checker_of(WAN)
    assert list(checker.fields) == list(MODELS[WAN].field_order)
    assert checker.required == ("prompt",)
    duration = checker.fields["duration"]
    assert duration.types == frozenset({"integer"})
    assert duration.enum == (5, 10)
    assert duration.default == 5
    assert duration.has_default
    assert duration.description == "The duration of the generated video in seconds."
    steps = checker.fields["num_inference_steps"]
    assert (steps.minimum, steps.maximum) == (1, 40)
    assert steps.allowed == "an integer 1 ~ 40"
    prompt = checker.fields["prompt"]
    assert (prompt.min_length, prompt.max_length, prompt.required) == (1, 2000, True)
    assert prompt.default is NO_VALUE
    assert not prompt.has_default
    assert checker.defaults()["duration"] == 5
    assert "prompt" not in checker.defaults()
    lora = checker_of(LORA).fields["loras"]
    assert lora.items is not None and lora.items.properties is not None
    assert list(lora.items.properties) == ["path", "scale"]
    assert lora.items.required_fields == ("path", "scale")  # required, with a default
    assert repr(checker) == f"<Checker {WAN} exact, 9 fields>"


@pytest.mark.parametrize("spec", [FLUX_KONTEXT_DEV, FLUX_KONTEXT_PRO_T2I], ids=lambda s: s.model)
def test_the_catalogue_schemas_agree_with_the_hand_written_specs(spec: Any) -> None:
    assert compare_with_spec(checker_of(spec.model), spec) == []


def test_compare_with_spec_reports_each_disagreement() -> None:
    schema = MODELS[DEV].input_schema
    assert schema is not None
    changed = {
        **schema,
        "properties": {
            **schema["properties"],
            "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 60, "default": 28},
            "guidance_scale": {"type": "string"},
            "extra": {"type": "string"},
        },
        "required": ["prompt", "image"],
    }
    del changed["properties"]["num_images"]
    found = compare_with_spec(compile_schema(DEV, changed), FLUX_KONTEXT_DEV)
    assert found == [
        "image: required=True in the schema, False in the spec",
        "num_inference_steps: maximum 60 in the schema, 50 in the spec",
        "guidance_scale: type a string in the schema, number in the spec",
        "extra: only in the schema",
        "num_images: only in the spec",
    ]


def test_a_string_with_bounds_is_a_wavespeed_size_checked_per_side() -> None:
    schema = obj({"size": {"type": "string", "minimum": 512, "maximum": 1536}})
    checker = compile_schema("acme/m", schema)
    assert checker.fields["size"].allowed == '"W*H" with each dimension 512 ~ 1536'
    assert checker.problems({"size": "1024*768"}) == []
    assert checker.problems({"size": "512*1536"}) == []
    found = [str(p) for p in checker.problems({"size": "4000*768"})]
    assert found == [
        "size: '4000*768' is out of acme/m's range; allowed: \"W*H\" with each dimension 512 ~ 1536"
    ]
    [hint] = checker.problems({"size": "1024x768"})
    assert 'is not a size (write it "1024*768")' in str(hint)
    [other] = checker.problems({"size": "large"})
    assert str(other).startswith("size: 'large' is not a size; allowed: ")
