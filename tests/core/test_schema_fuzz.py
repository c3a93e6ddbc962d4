"""Compiled checkers agree with a reference JSON Schema validator (``jsonschema``).

They never refuse what it accepts; whatever the schema and the input, they raise nothing
unexpected.

Each generated object schema states ``additionalProperties``, so that JSON Schema's verdict
on other keys is the checker's (which refuses them by default, where the API would drop
them silently).
"""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.core.strategies import any_json, instances, objects, schemas
from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.schema import compile_schema


def _strict_integers(checker: Any, instance: Any) -> bool:
    """The checker's rule: a float is not an integer, even when whole (2.0)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


Reference = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integers),
)


def reference_valid(schema: dict[str, Any], instance: Any) -> bool:
    return bool(Reference(schema).is_valid(instance))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_exact_checkers_agree_with_json_schema(data: st.DataObject) -> None:
    schema = data.draw(objects(schemas(exact=True), exact=True))
    checker = compile_schema("acme/m", schema)
    assert checker.exact, checker.reason
    for _ in range(5):
        instance = data.draw(instances(schema))
        found = checker.problems(instance)
        assert (not found) == reference_valid(schema, instance), (instance, [str(p) for p in found])


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_checkers_never_refuse_what_json_schema_accepts(data: st.DataObject) -> None:
    schema = data.draw(objects(schemas(exact=False), exact=False))
    checker = compile_schema("acme/m", schema)
    for _ in range(5):
        instance = data.draw(instances(schema))
        if reference_valid(schema, instance):
            assert checker.problems(instance) == [], (instance, checker.reason)


@given(st.data())
def test_an_input_of_the_schemas_own_defaults_passes(data: st.DataObject) -> None:
    schema = data.draw(objects(schemas(exact=True), exact=True))
    checker = compile_schema("acme/m", schema)
    defaults = checker.defaults()
    assume(not checker.required)
    assume(reference_valid(schema, defaults))
    checker.check(defaults)


@settings(max_examples=500)
@given(any_json, any_json)
def test_any_schema_compiles_and_any_input_gives_only_validation_errors(
    schema: Any, instance: Any
) -> None:
    checker = compile_schema("acme/m", schema)
    assert checker.exact == (checker.reason is None)
    found = checker.problems(instance)
    assert all(isinstance(p, ValidationError) for p in found)
    for problem in found:
        assert isinstance(problem.field, str)
        assert str(problem).isprintable()
    if checker.uncheckable:
        assert found == [] or not isinstance(instance, dict)


@settings(max_examples=200)
@given(any_json)
def test_a_schema_with_a_type_object_top_and_anything_inside_never_crashes(inner: Any) -> None:
    schema = {"type": "object", "properties": {"p": inner, "q": {"type": "integer"}}}
    checker = compile_schema("acme/m", schema)
    for value in (None, 0, "x", [inner], {"k": inner}, inner, math.pi):
        checker.problems({"p": value, "q": 1})
    body = msgspec.json.encode(schema)  # the schema itself is plain JSON
    assert body
