"""A model's request schema, compiled once into a fast checker of inputs.

WaveSpeed drops input keys a model does not take and bills the task with the defaults, so
a misspelt ``guidence_scale`` is a paid wrong result. :func:`compile_schema` turns a
model's JSON Schema (from the catalogue) into a :class:`Checker` that refuses such a key
before anything is sent (with ``did you mean 'guidance_scale'?``), along with missing
required fields and values of the wrong type or out of range::

    checker = compile_schema("wavespeed-ai/flux-dev", model.input_schema)
    checker.check({"prompt": "a cat", "guidence_scale": 3})   # raises ValidationError
    checker.problems(body)                                     # every problem, as a list

What is checked: unknown keys (the control fields ``enable_sync_mode``,
``enable_base64_output``, ``enable_safety_checker`` are known to every model and must be
booleans), ``required`` (even for a field with a ``default``), ``type`` (one type
or a list; a bool is not an integer, and a float is not an integer even when whole),
``nullable``, ``enum``, ``const``, ``minimum``/``maximum``, ``exclusiveMinimum``/
``exclusiveMaximum`` (numbers, or draft-4 booleans), ``minLength``/``maxLength``,
``pattern`` (when Python's ``re`` compiles it and it cannot backtrack without bound:
:mod:`wavespeed_async._core.patterns`), ``items``/``minItems``/``maxItems``, nested
``properties``/``required``/``additionalProperties``, local ``$ref`` (``#/...``), and
``anyOf``/``oneOf``/``allOf`` whose branches are all understood. ``null`` is refused for a
field whose schema does not allow it (leave the field out to get its default).

Fail open: a checker refuses nothing the schema allows, but for two deliberate choices:
a key the schema does not list is refused even where JSON Schema would let it through
(the API drops it, so it is almost always a typo), and a whole float is not an integer
(``2.0`` for ``num_images``). A field that ``required`` lists is required even when it
has a ``default``: the model pages give their example prompt or image as the
``default``, and a prompt left out is an error, or a task billed for the example. What
the checker cannot understand, it does not check, and says so (``exact=False``,
``reason``):

* The whole schema is *uncheckable* (checks nothing) when it is not an object, does not
  say ``type: object``, has no ``properties``, or its top ``$ref`` cannot be resolved.
* Keywords at the top that may admit more keys (``patternProperties``, ``allOf``,
  ``anyOf``, ``oneOf``, ``if``, ``dependentSchemas``, ...) turn off only the unknown-key
  check; the declared fields are still checked (their constraints hold in any case).
* Inside one field, a construct it cannot evaluate (a remote ``$ref``, a combinator with
  a branch it does not understand, an unknown ``type`` name) leaves that part unchecked;
  keywords it does not know are ignored, which can only accept more.

Checking a valid ten-field input takes a few microseconds (``benchmarks/schema_check.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

from wavespeed_async._core.catalog import field_order
from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.patterns import pattern_problem
from wavespeed_async._core.rules import (
    CONTROL_FIELDS,
    JSON_TYPES,
    NO_VALUE,
    FieldRule,
    allowed_text,
    join_path,
    kind_name,
    label,
    types_text,
)
from wavespeed_async._core.validators import json_equal, make_validator

__all__ = [
    "CONTROL_FIELDS",
    "NO_VALUE",
    "Checker",
    "FieldRule",
    "compare_with_spec",
    "compile_schema",
]

# Keywords that may admit keys beyond ``properties``: with one of them, an object's
# unknown-key check is off.
_MORE_KEYS: Final = (
    "patternProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependencies",
    "unevaluatedProperties",
    "$dynamicRef",
    "$recursiveRef",
)
# Keywords that restrict but are not evaluated: ignoring one can only accept more.
_IGNORED_RESTRICTIONS: Final = (
    "multipleOf",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "not",
    "if",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "patternProperties",
    "dependentSchemas",
    "dependencies",
    "$dynamicRef",
    "$recursiveRef",
)
_MAX_DEPTH: Final = 24


class Checker:
    """A model's compiled request schema: checks an input dict before it is sent.

    Built by :func:`compile_schema`; immutable and safe to share between tasks and threads.

    Attributes:
        model_id: The model the schema belongs to (named in every message).
        exact: Whether the whole schema was understood (then the checker accepts exactly
            what the schema accepts); ``False`` means some part is not checked.
        uncheckable: Whether nothing at all is checked.
        reason: What was not understood (``None`` when ``exact``).
        root: The rule of the input object itself.
    """

    __slots__ = ("_validate", "exact", "model_id", "reason", "root", "uncheckable")

    model_id: str
    exact: bool
    uncheckable: bool
    reason: str | None
    root: FieldRule

    def __init__(self, model_id: str, root: FieldRule, *, uncheckable: bool = False) -> None:
        self.model_id = model_id
        self.root = root
        self.uncheckable = uncheckable
        notes = _all_notes(root)
        self.exact = not notes and not uncheckable
        self.reason = "; ".join(notes) if notes else None
        self._validate = root.validate

    @property
    def fields(self) -> Mapping[str, FieldRule]:
        """The model's input fields in the model page's order (empty when uncheckable)."""
        return self.root.properties or {}

    @property
    def required(self) -> tuple[str, ...]:
        """The names of the fields an input must have."""
        return self.root.required_fields

    def defaults(self) -> dict[str, Any]:
        """The schema's default of each field that has one."""
        return {name: r.default for name, r in self.fields.items() if r.default is not NO_VALUE}

    def check(self, input: Mapping[str, Any]) -> None:
        """Check an input dict; return if it is fine.

        Raises:
            ValidationError: The first problem: ``.field`` is its path (``loras[1].scale``),
                the message names the model, the field and what is allowed, and
                ``.allowed`` says what is allowed.
        """
        out: list[ValidationError] = []
        self._validate(input, "", out)
        if out:
            raise out[0]

    def problems(self, input: Mapping[str, Any]) -> list[ValidationError]:
        """Every problem of an input dict, in the input's order (missing fields last)."""
        out: list[ValidationError] = []
        self._validate(input, "", out)
        return out

    def __repr__(self) -> str:
        state = "uncheckable" if self.uncheckable else ("exact" if self.exact else "inexact")
        return f"<Checker {self.model_id} {state}, {len(self.fields)} fields>"


def compile_schema(model_id: str, request_schema: Any) -> Checker:
    """Compile a model's request schema into a :class:`Checker`. Never raises.

    Args:
        model_id: The model path, named in every message.
        request_schema: The decoded JSON Schema (``Model.input_schema``); any value is
            accepted, and one that is not a schema the checker understands gives an
            uncheckable checker (``exact=False``, ``reason`` set) that accepts anything.
    """
    compiler = _Compiler(model_id, request_schema)
    try:
        return compiler.root()
    except RecursionError:  # a schema nested past Python's own stack; nothing is lost
        return _uncheckable(model_id, "the schema is nested too deeply")


class SpecLike(Protocol):
    """The parts of a hand-written ``ModelSpec`` that :func:`compare_with_spec` reads."""

    @property
    def model(self) -> str: ...
    @property
    def fields(self) -> Sequence[Any]: ...


def compare_with_spec(checker: Checker, spec: SpecLike) -> list[str]:
    """Where a compiled schema and a hand-written spec (``_specs.ModelSpec``) disagree.

    Compared per field: presence, JSON type, ``required``, bounds, choices and default.
    A control field present on one side only is not a disagreement (every model takes
    them), nor is a bound or default one side leaves unstated.

    Returns:
        One line per disagreement (empty when they agree).
    """
    out: list[str] = []
    theirs = {f.name: f for f in spec.fields}
    ours = checker.fields
    for name in [*ours, *(n for n in theirs if n not in ours)]:
        if name not in theirs or name not in ours:
            if name not in CONTROL_FIELDS:
                side = "the schema" if name in ours else "the spec"
                out.append(f"{name}: only in {side}")
            continue
        rule, spec_field = ours[name], theirs[name]
        json_type = _SPEC_TYPES.get(getattr(spec_field, "type", None), "?")
        if rule.types is not None and json_type not in rule.types:
            out.append(
                f"{name}: type {types_text(rule.types)} in the schema, {json_type} in the spec"
            )
        if rule.required != bool(spec_field.required):
            out.append(
                f"{name}: required={rule.required} in the schema, {spec_field.required} in the spec"
            )
        for attr in ("minimum", "maximum"):
            a, b = getattr(rule, attr), getattr(spec_field, attr)
            if a is not None and b is not None and a != b:
                out.append(f"{name}: {attr} {a} in the schema, {b} in the spec")
        choices = getattr(spec_field, "choices", None)
        if rule.enum is not None and choices is not None and set(rule.enum) != set(choices):
            out.append(f"{name}: enum {list(rule.enum)} in the schema, {list(choices)} in the spec")
        default = spec_field.default
        if rule.has_default and default is not None and not json_equal(rule.default, default):
            out.append(f"{name}: default {rule.default!r} in the schema, {default!r} in the spec")
    return out


_SPEC_TYPES: Final[Mapping[Any, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}


# ---------------------------------------------------------------------------------------
# Compiling


class _Compiler:
    """Builds the rules of one model's schema."""

    def __init__(self, model_id: str, schema: Any) -> None:
        self.model_id = model_id
        self.schema = schema
        self.refs: list[str] = []

    def root(self) -> Checker:
        schema = self.schema
        if schema is None:
            return _uncheckable(self.model_id, "the model has no request schema")
        if not isinstance(schema, Mapping):
            return _uncheckable(self.model_id, f"the schema is {kind_name(schema)}, not an object")
        if "$ref" in schema:
            ref = schema["$ref"]
            schema = self.resolve(ref)
            if not isinstance(schema, Mapping):
                return _uncheckable(self.model_id, f"its $ref {ref!r:.80} does not resolve")
        types = _types_of(schema.get("type"))
        if types is None or "object" not in types:
            return _uncheckable(self.model_id, "the schema does not say type: object")
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            return _uncheckable(self.model_id, "the schema lists no properties")
        return Checker(self.model_id, self.rule(schema, "", depth=0, strict_keys=True, root=True))

    def resolve(self, ref: Any) -> Any:
        """The target of a local ``$ref`` (``#/$defs/X``), or ``None``."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node: Any = self.schema
        if ref in ("#", "#/"):
            return node
        if not ref.startswith("#/"):
            return None
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return None
        return node

    def rule(
        self,
        schema: Any,
        name: str,
        *,
        depth: int,
        strict_keys: bool,
        required: bool = False,
        root: bool = False,
    ) -> FieldRule:
        """The rule of one schema: the input, a field, an array's items, a branch."""
        if schema is True or (isinstance(schema, Mapping) and not schema):
            return self.finish(FieldRule(name, required=required))
        if not isinstance(schema, Mapping):
            return _unchecked(name, f"its schema is {kind_name(schema)}", required)
        if depth > _MAX_DEPTH:
            return _unchecked(name, "its schema is nested too deeply", required)
        if "$ref" in schema:
            return self.ref_rule(
                schema, name, depth=depth, strict_keys=strict_keys, required=required
            )

        notes: list[str] = []
        kw: dict[str, Any] = {}
        raw_type = schema.get("type")
        types = _types_of(raw_type)
        if raw_type is not None and types is None:
            notes.append(f"type {raw_type!r:.60} is not understood; its type is not checked")
        allows_null = types is None or "null" in types
        if types is not None:
            types = types - {"null"}  # empty: null only

        for key in ("minimum", "maximum"):
            if key in schema:
                if _is_number(schema[key]):
                    kw[key] = schema[key]
                else:
                    notes.append(f"{key} {schema[key]!r:.40} is not a number; not checked")
        for key, attr, bound in (
            ("exclusiveMinimum", "exclusive_minimum", "minimum"),
            ("exclusiveMaximum", "exclusive_maximum", "maximum"),
        ):
            value = schema.get(key)
            if value is True and bound in kw:  # draft 4: a flag that excludes the bound
                kw[attr] = kw.pop(bound)
            elif _is_number(value):
                kw[attr] = value
            elif value is not None and value is not False:
                notes.append(f"{key} {value!r:.40} is not a number; not checked")
        for key, attr in (
            ("minLength", "min_length"),
            ("maxLength", "max_length"),
            ("minItems", "min_items"),
            ("maxItems", "max_items"),
        ):
            if key in schema:
                if _is_count(schema[key]):
                    kw[attr] = int(schema[key])
                else:
                    notes.append(f"{key} {schema[key]!r:.40} is not a count; not checked")
        if "pattern" in schema:
            why = pattern_problem(schema["pattern"])
            if why is None:
                kw["pattern"] = schema["pattern"]
            else:
                notes.append(f"pattern {schema['pattern']!r:.60} {why}; not checked")
        for lo, hi in (
            ("minimum", "maximum"),
            ("min_length", "max_length"),
            ("min_items", "max_items"),
        ):
            if lo in kw and hi in kw and kw[lo] > kw[hi]:
                # Bounds no value meets are a slip of the schema, not a model that takes
                # nothing: refusing every value would block what the API accepts.
                notes.append(f"{lo} {kw.pop(lo)!r} above {hi} {kw.pop(hi)!r}; not checked")
        if "enum" in schema:
            if schema["enum"] == []:
                notes.append("enum lists no value; not checked")
            elif isinstance(schema["enum"], list):
                kw["enum"] = tuple(schema["enum"])
                allows_null = allows_null and any(v is None for v in kw["enum"])
            else:
                notes.append("enum is not a list; not checked")
        if "const" in schema:
            kw["const"] = schema["const"]
            allows_null = allows_null and kw["const"] is None
        if "items" in schema:
            if isinstance(schema["items"], list):
                notes.append("items as a list (tuple form) is not checked")
            else:
                kw["items"] = self.rule(
                    schema["items"], f"{name}[]", depth=depth + 1, strict_keys=strict_keys
                )
        for keyword, attr in (("anyOf", "any_of"), ("oneOf", "one_of"), ("allOf", "all_of")):
            if keyword not in schema:
                continue
            raw = schema[keyword]
            if not isinstance(raw, list) or not raw:
                notes.append(f"{keyword} is not a list of schemas; not checked")
                continue
            # Inside a branch JSON Schema's own rule holds: keys it does not list are allowed.
            branches = tuple(self.rule(b, name, depth=depth + 1, strict_keys=False) for b in raw)
            if all(b.checked and not _all_notes(b) for b in branches):
                kw[attr] = branches
            else:
                notes.append(f"{keyword} has a branch that is not understood; not checked")
        notes.extend(f"{key} is not checked" for key in _IGNORED_RESTRICTIONS if key in schema)
        if "any_of" in kw:
            allows_null = allows_null and any(b.nullable for b in kw["any_of"])
        if "all_of" in kw:
            allows_null = allows_null and all(b.nullable for b in kw["all_of"])
        if "one_of" in kw:
            allows_null = allows_null and sum(b.nullable for b in kw["one_of"]) == 1
        default = schema.get("default", NO_VALUE)
        # An explicit null default or OpenAPI's nullable admits null whatever else is said.
        nullable = allows_null or default is None or schema.get("nullable") is True

        rule = FieldRule(
            name,
            types=types,
            nullable=nullable,
            required=required,
            default=default,
            description=_text(schema.get("description")),
            notes=tuple(notes),
            **kw,
        )
        if "properties" in schema or "required" in schema or (types and "object" in types):
            rule = self.with_properties(
                rule, schema, depth=depth, strict_keys=strict_keys, root=root
            )
        return self.finish(rule, root=root)

    def ref_rule(
        self, schema: Mapping[str, Any], name: str, *, depth: int, strict_keys: bool, required: bool
    ) -> FieldRule:
        """A ``$ref``'s target, as in draft 7: the keywords beside it are not applied."""
        ref = schema["$ref"]
        target = self.resolve(ref)
        if target is None:
            return _unchecked(name, f"$ref {ref!r:.80} does not resolve here", required)
        if ref in self.refs:
            return _unchecked(name, f"$ref {ref!r:.80} refers to itself", required)
        self.refs.append(ref)
        try:
            inner = self.rule(
                target, name, depth=depth + 1, strict_keys=strict_keys, required=required
            )
        finally:
            self.refs.pop()
        description = _text(schema.get("description")) or inner.description
        default = schema.get("default", inner.default)
        nullable = inner.nullable or default is None or schema.get("nullable") is True
        return self.finish(
            replace(inner, description=description, default=default, nullable=nullable)
        )

    def with_properties(
        self,
        rule: FieldRule,
        schema: Mapping[str, Any],
        *,
        depth: int,
        strict_keys: bool,
        root: bool,
    ) -> FieldRule:
        """The rule with an object's fields, which of them are required, and other keys."""
        notes = list(rule.notes)
        raw = schema.get("properties")
        if raw is not None and not isinstance(raw, Mapping):
            notes.append("properties is not an object; not checked")
            raw = None
        raw_required = schema.get("required", [])
        if not isinstance(raw_required, list):
            notes.append("required is not a list; not checked")
            raw_required = []
        required = [r for r in raw_required if isinstance(r, str)]
        if raw is None and not required:
            return replace(rule, notes=tuple(notes))  # an object of any keys
        properties: dict[str, FieldRule] = {}
        listed: Mapping[str, Any] = raw if raw is not None else {}
        for key in field_order(schema):
            sub = listed[key]
            # Required even with a default: a model page's default is often its example
            # (a prompt), which the API does not run with.
            properties[key] = self.rule(
                sub, key, depth=depth + 1, strict_keys=strict_keys, required=key in required
            )
        for key in required:  # required, but without a schema of its own: any value
            if key not in properties:
                properties[key] = self.finish(FieldRule(key, required=True))
        extra = schema.get("additionalProperties", NO_VALUE)
        additional: bool | FieldRule
        if raw is None:
            additional = True  # no properties listed: any other key is allowed
        elif extra is NO_VALUE:
            # JSON Schema would allow other keys, but the API drops them silently: where a
            # key is most likely a typo, it is refused.
            additional = not strict_keys
        elif isinstance(extra, bool):
            additional = extra
        else:
            additional = self.rule(extra, "*", depth=depth + 1, strict_keys=strict_keys)
        admitting = [k for k in _MORE_KEYS if k in schema]
        if additional is not True and admitting:
            what = "unknown input keys" if root else "unknown keys"
            notes.append(f"{what} are not refused ({', '.join(admitting)} may admit more)")
            additional = True
        return replace(rule, properties=properties, additional=additional, notes=tuple(notes))

    def finish(self, rule: FieldRule, *, root: bool = False) -> FieldRule:
        """The rule with its ``allowed`` text and its validator."""
        rule = replace(rule, allowed=allowed_text(rule))
        return replace(rule, validate=make_validator(self.model_id, rule, root=root))


def _unchecked(name: str, why: str, required: bool) -> FieldRule:
    return FieldRule(name, required=required, checked=False, notes=(f"{why}; not checked",))


def _uncheckable(model_id: str, why: str) -> Checker:
    root = FieldRule("", checked=False, notes=(f"{why}; nothing is checked",))
    return Checker(model_id, root, uncheckable=True)


def _all_notes(rule: FieldRule, path: str = "") -> list[str]:
    """Every note of a rule and of the rules under it, each after its path."""
    out = [f"{path}: {n}" if path else n for n in rule.notes]
    for name, sub in (rule.properties or {}).items():
        # A name the server chose is escaped: the reason is logged and printed.
        out.extend(_all_notes(sub, join_path(path, name) if path else label(name)))
    if rule.items is not None:
        out.extend(_all_notes(rule.items, f"{path}[]"))
    if isinstance(rule.additional, FieldRule):
        out.extend(_all_notes(rule.additional, join_path(path, "*")))
    return out


def _types_of(raw: Any) -> frozenset[str] | None:
    """The JSON types a ``type`` keyword names; ``None`` when absent or not understood."""
    if isinstance(raw, str):
        return frozenset({raw}) if raw in JSON_TYPES else None
    if isinstance(raw, list) and raw and all(isinstance(t, str) and t in JSON_TYPES for t in raw):
        return frozenset(raw)
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _is_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value >= 0 and (isinstance(value, int) or value.is_integer())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
