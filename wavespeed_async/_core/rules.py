"""The compiled form of a request schema: one rule per value, and the checks it runs.

:mod:`wavespeed_async._core.schema` builds the rules; this module says what a rule allows
(in words, for messages) and builds each rule's validator: a closure holding only the
checks its schema asks for, which appends one :class:`ValidationError` per problem.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from wavespeed_async._errors import ValidationError

__all__ = [
    "CONTROL_FIELDS",
    "JSON_TYPES",
    "NO_VALUE",
    "FieldRule",
    "Validate",
    "accept",
    "allowed_text",
    "join_path",
    "json_equal",
    "kind_name",
    "label",
    "make_validator",
    "types_text",
]

#: Fields the API takes for every model, whatever its schema says: booleans.
CONTROL_FIELDS: Final = ("enable_sync_mode", "enable_base64_output", "enable_safety_checker")
#: The JSON Schema type names.
JSON_TYPES: Final = ("string", "integer", "number", "boolean", "array", "object", "null")

#: A validator: ``(value, path, problems)``; appends one error per problem found.
Validate = Callable[[Any, str, list[ValidationError]], None]

# The JSON kind of a value by its exact class; subclasses go through _kind.
_KINDS: Final[Mapping[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


class _NoValue:
    """The absence of a ``default`` or ``const`` (``None`` is JSON's null, a real value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False


def accept(value: Any, path: str, out: list[ValidationError]) -> None:
    """The validator of a rule that checks nothing."""


#: What :attr:`FieldRule.default` and :attr:`FieldRule.const` hold when there is none.
NO_VALUE: Final = _NoValue()


@dataclass(frozen=True, eq=False)
class FieldRule:
    """What one value (a field, an array item, a nested field) allows, as compiled.

    Numbers are as the schema wrote them. ``types is None`` means any JSON type. A rule
    with ``checked=False`` accepts anything (``notes`` says why).

    Attributes:
        name: The field's name (``"loras[]"`` for the items of ``loras``, ``""`` for the
            input itself).
        types: The allowed JSON types, ``"null"`` excluded (see ``nullable``), or ``None``.
        nullable: Whether ``null`` is allowed.
        required: Whether the enclosing object must have this field.
        default: The schema's default, or :data:`NO_VALUE`.
        description: The schema's description (``""`` when none).
        minimum, maximum: Inclusive bounds of a number, or ``None``.
        exclusive_minimum, exclusive_maximum: Exclusive bounds of a number, or ``None``.
        min_length, max_length: Bounds of a string's length in characters, or ``None``.
        pattern: A regular expression a string must contain a match of, or ``None``.
        enum: The allowed values, or ``None``.
        const: The only allowed value, or :data:`NO_VALUE`.
        min_items, max_items: Bounds of an array's length, or ``None``.
        items: The rule of each array item, or ``None`` (any).
        properties: The rules of an object's known fields, in the model page's order, or
            ``None`` (any keys).
        additional: For an object with ``properties``: whether other keys are allowed
            (``True``), refused (``False``), or checked by a rule.
        any_of, one_of, all_of: Rules of evaluated combinators (``()`` when none).
        checked: ``False`` when the schema could not be understood and nothing is checked.
        notes: What was not understood here, and so not checked.
        allowed: A human-readable statement of what is allowed.
    """

    name: str
    types: frozenset[str] | None = None
    nullable: bool = True
    required: bool = False
    default: Any = NO_VALUE
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    const: Any = NO_VALUE
    min_items: int | None = None
    max_items: int | None = None
    items: FieldRule | None = None
    properties: Mapping[str, FieldRule] | None = None
    additional: bool | FieldRule = True
    any_of: tuple[FieldRule, ...] = ()
    one_of: tuple[FieldRule, ...] = ()
    all_of: tuple[FieldRule, ...] = ()
    checked: bool = True
    notes: tuple[str, ...] = ()
    allowed: str = "any value"
    validate: Validate = field(default=accept, repr=False)

    @property
    def has_default(self) -> bool:
        """Whether the schema gives a default."""
        return self.default is not NO_VALUE

    @property
    def required_fields(self) -> tuple[str, ...]:
        """For an object: the names of its required fields, in order."""
        if self.properties is None:
            return ()
        return tuple(name for name, rule in self.properties.items() if rule.required)


# ---------------------------------------------------------------------------------------
# Describing what is allowed


def allowed_text(rule: FieldRule) -> str:
    """What a rule allows, in words: ``an integer 1 ~ 50``, ``one of '5', '10'``."""
    if not rule.checked:
        return "any value"
    if rule.const is not NO_VALUE:
        return f"exactly {_show(rule.const)}"
    if rule.enum is not None:
        return "one of " + ", ".join(_show(v) for v in rule.enum) if rule.enum else "no value"
    branches = rule.any_of or rule.one_of
    if branches and rule.types is None:
        return " or ".join(dict.fromkeys(b.allowed for b in branches))
    if rule.properties and (rule.types is None or rule.types == {"object"}):
        text = "an object with the fields " + ", ".join(label(k) for k in rule.properties)
    elif rule.types is None:
        text = "any value"
    elif not rule.types:
        return "null"
    else:
        text = types_text(rule.types)
    details = [
        d
        for d in (
            _range_text(rule),
            _count_text(rule.min_length, rule.max_length, "characters"),
            _count_text(rule.min_items, rule.max_items, "items"),
            f"matching {rule.pattern!r}" if rule.pattern is not None else "",
        )
        if d
    ]
    if details:
        text = f"{text} " + ", ".join(details)
    if rule.nullable and rule.types:
        text += " or null"
    return text


def types_text(types: frozenset[str]) -> str:
    """``a string or an integer``: JSON types in words (``number`` covers ``integer``)."""
    names = [t for t in JSON_TYPES if t in types and t != "null"]
    if "number" in names and "integer" in names:
        names.remove("integer")
    words = {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean",
        "array": "a list",
        "object": "an object",
    }
    return " or ".join(words[t] for t in names) or "null"


def _range_text(rule: FieldRule) -> str:
    bounds = (rule.minimum, rule.maximum, rule.exclusive_minimum, rule.exclusive_maximum)
    if all(b is None for b in bounds):
        return ""
    if rule.minimum is not None and rule.maximum is not None:
        return f"{_num(rule.minimum)} ~ {_num(rule.maximum)}"
    parts = []
    if rule.minimum is not None:
        parts.append(f"at least {_num(rule.minimum)}")
    if rule.exclusive_minimum is not None:
        parts.append(f"more than {_num(rule.exclusive_minimum)}")
    if rule.maximum is not None:
        parts.append(f"at most {_num(rule.maximum)}")
    if rule.exclusive_maximum is not None:
        parts.append(f"less than {_num(rule.exclusive_maximum)}")
    return " and ".join(parts)


def _count_text(lo: int | None, hi: int | None, unit: str) -> str:
    if lo is None and hi is None:
        return ""
    if lo is not None and hi is not None:
        return f"of {lo} ~ {hi} {unit}" if lo != hi else f"of exactly {lo} {unit}"
    return f"of at least {lo} {unit}" if lo is not None else f"of at most {hi} {unit}"


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def _show(value: Any) -> str:
    """A value as a message shows it: short, and never a line break or control character
    (a long string or list is cut before it is written out, not after)."""
    text = _repr.repr(value)
    return text if len(text) <= 60 else text[:59] + "\u2026"


_repr: Final = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6
_repr.maxlevel = 3


def kind_name(value: Any) -> str:
    kind = _kind(value)
    if kind is None:
        return f"a {type(value).__name__}"
    return {"integer": "an integer", "array": "a list", "object": "an object"}.get(
        kind, f"a {kind}"
    )


def label(text: str) -> str:
    """A name or path as a message shows it: a control or format character is escaped, so
    a name the server chose cannot act on the terminal the message is printed to."""
    return text if text.isprintable() else repr(text)[1:-1]


def join_path(path: str, key: str) -> str:
    """The path of a key inside ``path``: ``loras[1].scale``, ``opts['a key']``."""
    if not path:
        return key
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


# ---------------------------------------------------------------------------------------
# Checking


def _kind(value: Any) -> str | None:
    """The JSON kind of a value (``None`` for null and for what is not JSON)."""
    kind = _KINDS.get(value.__class__)
    if kind is not None or value is None:
        return kind
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return None


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
        kind = _KINDS.get(value.__class__) or _kind(value)
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
            out.append(fail.at(path, f"{_show(value)} is below {fail.model}'s minimum"))
        elif xlo is not None and value <= xlo:
            out.append(fail.at(path, f"{_show(value)} is not above {fail.model}'s minimum"))
        if hi is not None and value > hi:
            out.append(fail.at(path, f"{_show(value)} is above {fail.model}'s maximum"))
        elif xhi is not None and value >= xhi:
            out.append(fail.at(path, f"{_show(value)} is not below {fail.model}'s maximum"))

    return check


def _string_check(rule: FieldRule, fail: _Fail) -> Validate:
    lo, hi = rule.min_length, rule.max_length
    search = re.compile(rule.pattern).search if rule.pattern is not None else None
    if lo is None and hi is None and search is None:
        return accept

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        n = len(value)
        if lo is not None and n < lo:
            out.append(fail.at(path, f"{_show(value)} is shorter than {fail.model}'s minimum"))
        if hi is not None and n > hi:
            out.append(fail.at(path, f"{n} characters is longer than {fail.model}'s maximum"))
        if search is not None and search(value) is None:
            out.append(fail.at(path, f"{_show(value)} does not match {fail.model}'s pattern"))

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
                sub.validate(item, key if root else join_path(path, key), out)
                continue
            if not isinstance(key, str):
                out.append(
                    ValidationError(
                        path or "input",
                        f"{path or 'input'}: key {_show(key)} is not allowed; allowed: "
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
                            f"{_show(item)}; allowed: true or false",
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
    numbers = frozenset(c for c in choices if _kind(c) in ("integer", "number"))
    booleans = frozenset(c for c in choices if isinstance(c, bool))
    others = [c for c in choices if _kind(c) in ("array", "object")]
    has_null = any(c is None for c in choices)
    sets = {"string": strings, "integer": numbers, "number": numbers, "boolean": booleans}

    def check(value: Any, path: str, out: list[ValidationError]) -> None:
        if value is None:
            if not has_null:
                out.append(fail.at(path, f"null is not {what} of {fail.model}"))
            return
        kind = _KINDS.get(value.__class__) or _kind(value)
        members = sets.get(kind) if kind is not None else None
        if members is not None:
            if value in members:
                return
        elif any(json_equal(value, c) for c in others):
            return
        out.append(
            fail.at(
                path,
                f"{_show(value)} is not {what} of {fail.model}",
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
                    path, f"{_show(value)} matches none of {fail.model}'s forms", allowed=allowed
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
                        f"{_show(value)} matches {how} of {fail.model}'s forms",
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
            hint = f"leave it out to get the default, {_show(rule.default)}"
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
            f"expected {expected} for {self.model}, got {kind_name(value)} {_show(value)}",
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
    ka, kb = _kind(a), _kind(b)
    if ka in ("integer", "number") and kb in ("integer", "number"):
        return bool(a == b)
    if ka != kb:
        return False
    if ka == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)
