"""Each rule's validator: a closure holding only the checks its schema asks for.

A validator appends one :class:`ValidationError` per problem it finds, so that every
problem of an input can be reported at once.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.rules import (
    CONTROL_FIELDS,
    KINDS,
    NO_VALUE,
    FieldRule,
    Validate,
    accept,
    is_size,
    join_path,
    json_kind,
    kind_name,
    label,
    show_value,
    types_text,
)

__all__ = ["json_equal", "make_validator"]


def make_validator(model: str, rule: FieldRule, *, root: bool = False) -> Validate:
    """The function that checks a value against ``rule``, appending each problem to ``out``.

    Built once per rule with only the checks the rule has, so a valid value costs a type
    test and the few comparisons its schema asks for.
    """
    if not rule.checked:
        return accept
    model = label(model)
    fail = _Fail(model, rule)
    by_kind: dict[str | None, list[Validate]] = {}

    def add(kinds: Sequence[str | None], check: Validate) -> None:
        for kind in kinds:
            by_kind.setdefault(kind, []).append(check)

    add(("integer", "number"), _number_check(rule, fail))
    add(("string",), _string_check(rule, fail))
    add(("array",), _array_check(model, rule, fail))
    if rule.properties is not None:
        add(("object",), _object_check(model, rule, root=root))
    any_kind = ("string", "integer", "number", "boolean", "array", "object", None)
    add(any_kind, _choice_check(rule, fail))
    add(any_kind, _combinator_check(rule, fail))
    checks = {k: tuple(c for c in v if c is not accept) for k, v in by_kind.items()}
    checks = {k: v for k, v in checks.items() if v}
    nullable = rule.nullable
    accepts = None
    if rule.types is not None:
        accepts = set(rule.types) | ({"integer"} if "number" in rule.types else set())

    def validate(value: Any, path: str, out: list[ValidationError]) -> None:
        if value is None:
            # An allowed null is allowed outright: enum, const, combinators and nullable
            # were weighed when the rule was built.
            if not nullable:
                out.append(fail.null(path))
            return
        kind = KINDS.get(value.__class__) or json_kind(value)
        if accepts is not None and kind not in accepts:
            out.append(fail.type(path, value, kind))
            return
        for check in checks.get(kind, ()):
            check(value, path, out)

    if root:
        # The input itself: anything but an object is refused whatever the schema says.
        def validate_input(value: Any, path: str, out: list[ValidationError]) -> None:
            if not isinstance(value, Mapping):
                out.append(
                    ValidationError(
                        "input",
                        f"input: {kind_name(value)} is not allowed; allowed: a dict of "
                        f"{model}'s inputs",
                        allowed=f"a dict of {model}'s inputs",
                    )
                )
                return
            for check in checks.get("object", ()):
                check(value, path, out)

        return validate_input
    return validate


def _number_check(rule: FieldRule, fail: _Fail) -> Validate:
    lo, hi = rule.minimum, rule.maximum
    xlo, xhi = rule.exclusive_minimum, rule.exclusive_maximum
    isfinite = math.isfinite

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        if isinstance(value, float) and not isfinite(value):
            out.append(fail.at(path, f"{value!r} is not a finite number"))
            return
        if lo is not None and value < lo:
            out.append(fail.at(path, f"{show_value(value)} is below {fail.model}'s minimum"))
        elif xlo is not None and value <= xlo:
            out.append(fail.at(path, f"{show_value(value)} is not above {fail.model}'s minimum"))
        if hi is not None and value > hi:
            out.append(fail.at(path, f"{show_value(value)} is above {fail.model}'s maximum"))
        elif xhi is not None and value >= xhi:
            out.append(fail.at(path, f"{show_value(value)} is not below {fail.model}'s maximum"))

    return check


_SIZE_RE = re.compile(r"(\d{1,9})\*(\d{1,9})")
_OTHER_SIZE_RE = re.compile(r"\s*(\d{1,9})\s*[xX,\u00d7]\s*(\d{1,9})\s*")


def _size_check(rule: FieldRule, fail: _Fail) -> Validate:
    """WaveSpeed's sizes: ``"W*H"``, each side within the rule's bounds."""
    lo, hi = rule.minimum, rule.maximum

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        m = _SIZE_RE.fullmatch(value)
        if m is None:
            other = _OTHER_SIZE_RE.fullmatch(value)
            hint = f'write it "{other[1]}*{other[2]}"' if other is not None else ""
            out.append(fail.at(path, f"{show_value(value)} is not a size", hint))
            return
        sides = (int(m[1]), int(m[2]))
        if any((lo is not None and d < lo) or (hi is not None and d > hi) for d in sides):
            out.append(fail.at(path, f"{show_value(value)} is out of {fail.model}'s range"))

    return check


def _string_check(rule: FieldRule, fail: _Fail) -> Validate:
    lo, hi = rule.min_length, rule.max_length
    search = re.compile(rule.pattern).search if rule.pattern is not None else None
    size = _size_check(rule, fail) if is_size(rule) else None
    if lo is None and hi is None and search is None and size is None:
        return accept

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        n = len(value)
        if lo is not None and n < lo:
            out.append(fail.at(path, f"{show_value(value)} is shorter than {fail.model}'s minimum"))
        if hi is not None and n > hi:
            out.append(fail.at(path, f"{n} characters is longer than {fail.model}'s maximum"))
        if search is not None and search(value) is None:
            out.append(fail.at(path, f"{show_value(value)} does not match {fail.model}'s pattern"))
        if size is not None:
            size(value, path, out)

    return check


def _array_check(model: str, rule: FieldRule, fail: _Fail) -> Validate:
    lo, hi = rule.min_items, rule.max_items
    item = rule.items.validate if rule.items is not None and rule.items.checked else None
    if lo is None and hi is None and item is None:
        return accept

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        n = len(value)
        if lo is not None and n < lo:
            out.append(fail.at(path, f"{n} items is fewer than {model}'s minimum"))
        if hi is not None and n > hi:
            out.append(fail.at(path, f"{n} items is more than {model}'s maximum"))
        if item is not None:
            for i, element in enumerate(value):
                item(element, f"{path}[{i}]", out)

    return check


def _object_check(model: str, rule: FieldRule, *, root: bool) -> Validate:
    properties = rule.properties or {}
    get = properties.get
    required = rule.required_fields
    additional = rule.additional
    extra = additional.validate if isinstance(additional, FieldRule) else None
    controls = frozenset(CONTROL_FIELDS) - set(properties) if root else frozenset()
    # The API takes a boolean for a control field whatever a schema says of it.
    listed_controls = frozenset(CONTROL_FIELDS) & set(properties) if root else frozenset()
    known = sorted({*properties, *controls})
    listing = ", ".join(label(name) for name in properties)
    whose = _whose(model, label(rule.name)) if not root else model

    def unknown(key: str, path: str) -> ValidationError:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        allowed = f"the fields {listing}" if listing else "no fields"
        return ValidationError(
            path,
            f"{label(path)}: not a field of {whose}{hint}; the API would ignore it and bill the "
            f"task with the defaults; allowed: {allowed}",
            allowed=allowed,
        )

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        for key, item in value.items():
            sub = get(key)
            if sub is not None:
                if key in listed_controls and item.__class__ is bool:
                    continue
                sub.validate(item, key if root else join_path(path, key), out)
                continue
            if not isinstance(key, str):
                out.append(
                    ValidationError(
                        path or "input",
                        f"{path or 'input'}: key {show_value(key)} is not allowed; allowed: "
                        "string field names",
                        allowed="string field names",
                    )
                )
            elif key in controls:
                if item.__class__ is not bool:
                    out.append(
                        ValidationError(
                            key,
                            f"{label(key)}: expected a boolean, got {kind_name(item)} "
                            f"{show_value(item)}; allowed: true or false",
                            allowed="true or false",
                        )
                    )
            elif extra is not None:
                extra(item, join_path(path, key), out)
            elif additional is False:
                out.append(unknown(key, join_path(path, key)))
        out.extend(
            _missing(properties[name], join_path(path, name), whose)
            for name in required
            if name not in value
        )

    return check


def _whose(model: str, name: str) -> str:
    """How a message names a nested object: ``an item of m's loras``, ``m's options``."""
    if name.endswith("[]"):
        return f"an item of {model}'s {name[:-2]}"
    return f"{model}'s {name}" if name else model


def _missing(rule: FieldRule, path: str, whose: str) -> ValidationError:
    return ValidationError(
        path, f"{label(path)}: required by {whose}; allowed: {rule.allowed}", allowed=rule.allowed
    )


def _choice_check(rule: FieldRule, fail: _Fail) -> Validate:
    if rule.const is not NO_VALUE:
        choices: tuple[Any, ...] = (rule.const,)
        what = "the only value"
    elif rule.enum is not None:
        choices = rule.enum
        what = "one of the choices"
    else:
        return accept
    # Set lookups per JSON kind: 1 == True in Python but not in JSON.
    strings = frozenset(c for c in choices if isinstance(c, str))
    numbers = frozenset(c for c in choices if json_kind(c) in ("integer", "number"))
    booleans = frozenset(c for c in choices if isinstance(c, bool))
    others = [c for c in choices if json_kind(c) in ("array", "object")]
    has_null = any(c is None for c in choices)
    sets = {"string": strings, "integer": numbers, "number": numbers, "boolean": booleans}

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        if value is None:
            if not has_null:
                out.append(fail.at(path, f"null is not {what} of {fail.model}"))
            return
        kind = KINDS.get(value.__class__) or json_kind(value)
        members = sets.get(kind) if kind is not None else None
        if members is not None:
            if value in members:
                return
        elif any(json_equal(value, c) for c in others):
            return
        out.append(
            fail.at(
                path,
                f"{show_value(value)} is not {what} of {fail.model}",
                _hint(value, strings, numbers),
            )
        )

    return check


def _hint(value: Any, strings: frozenset[str], numbers: frozenset[Any]) -> str:
    """How a value close to a choice is written as one: a number as a string, a typo."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in strings:
        return f"write it as {str(value)!r}, a string"
    if isinstance(value, str):
        number = _parse_number(value)
        if number is not None and number in numbers:
            return f"write it as {value.strip()}, a number, not a string"
        close = difflib.get_close_matches(value, sorted(strings), n=1, cutoff=0.6)
        if close:
            return f"did you mean {close[0]!r}?"
    return ""


def _combinator_check(rule: FieldRule, fail: _Fail) -> Validate:
    any_of = tuple(b.validate for b in rule.any_of)
    one_of = tuple(b.validate for b in rule.one_of)
    all_of = tuple(b.validate for b in rule.all_of)
    if not (any_of or one_of or all_of):
        return accept

    def matches(validate: Validate, value: Any, path: str) -> bool:
        trial: list[ValidationError] = []
        validate(value, path, trial)
        return not trial

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        for validate in all_of:
            validate(value, path, out)
        if any_of and not any(matches(v, value, path) for v in any_of):
            allowed = " or ".join(dict.fromkeys(b.allowed for b in rule.any_of))
            out.append(
                fail.at(
                    path,
                    f"{show_value(value)} matches none of {fail.model}'s forms",
                    allowed=allowed,
                )
            )
        if one_of:
            n = sum(matches(v, value, path) for v in one_of)
            if n != 1:
                allowed = "exactly one of: " + "; ".join(b.allowed for b in rule.one_of)
                how = "none" if n == 0 else f"{n}"
                out.append(
                    fail.at(
                        path,
                        f"{show_value(value)} matches {how} of {fail.model}'s forms",
                        allowed=allowed,
                    )
                )

    return check


class _Fail:
    """Builds the problems of one rule: each names the path, the model and what is allowed."""

    __slots__ = ("model", "rule")

    def __init__(self, model: str, rule: FieldRule) -> None:
        self.model = model
        self.rule = rule

    def at(
        self, path: str, what: str, hint: str = "", *, allowed: str | None = None
    ) -> ValidationError:
        allowed = allowed if allowed is not None else self.rule.allowed
        hint = f" ({hint})" if hint else ""
        path = path or "input"
        return ValidationError(
            path, f"{label(path)}: {what}{hint}; allowed: {allowed}", allowed=allowed
        )

    def null(self, path: str) -> ValidationError:
        rule = self.rule
        if rule.default is not NO_VALUE:
            hint = f"leave it out to get the default, {show_value(rule.default)}"
        elif not rule.required and not path.endswith("]"):
            hint = "leave it out to get the model's default"
        else:
            hint = ""
        return self.at(path, f"null is not allowed by {self.model}", hint)

    def type(self, path: str, value: Any, kind: str | None) -> ValidationError:
        rule = self.rule
        hint = ""
        types = rule.types or frozenset()
        if kind == "string" and types & {"integer", "number"}:
            number = _parse_number(value)
            if number is not None and ("number" in types or isinstance(number, int)):
                hint = f"write it as {value.strip()}, a number, not a string"
        elif kind in ("integer", "number") and "string" in types:
            hint = f"write it as {str(value)!r}, a string"
        elif kind == "number" and "integer" in types and float(value).is_integer():
            hint = f"write it as {int(value)}, an integer"
        expected = types_text(types) if types else "null"
        return self.at(
            path,
            f"expected {expected} for {self.model}, got {kind_name(value)} {show_value(value)}",
            hint,
        )


def _parse_number(text: str) -> int | float | None:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: ``true`` is not ``1``, ``1`` is ``1.0``, deep for lists."""
    ka, kb = json_kind(a), json_kind(b)
    if ka in ("integer", "number") and kb in ("integer", "number"):
        return bool(a == b)
    if ka != kb:
        return False
    if ka == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)
