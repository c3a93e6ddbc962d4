"""The compiled form of a request schema: one rule per value, and what it allows in words.

:mod:`wavespeed_async._core.schema` builds the rules, :mod:`wavespeed_async._core.validators`
each rule's checks; this module holds the rule and the words of the messages.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from wavespeed_async._core.errors import ValidationError

__all__ = [
    "CONTROL_FIELDS",
    "JSON_TYPES",
    "KINDS",
    "NO_VALUE",
    "FieldRule",
    "Validate",
    "accept",
    "allowed_text",
    "is_size",
    "join_path",
    "json_kind",
    "kind_name",
    "label",
    "show_value",
    "types_text",
]

#: Fields the API takes for every model, whatever its schema says: booleans.
CONTROL_FIELDS: Final = ("enable_sync_mode", "enable_base64_output", "enable_safety_checker")
#: The JSON Schema type names.
JSON_TYPES: Final = ("string", "integer", "number", "boolean", "array", "object", "null")

#: A validator: ``(value, path, problems)``; appends one error per problem found.
Validate = Callable[[Any, str, list[ValidationError]], None]

# The JSON kind of a value by its exact class; subclasses go through json_kind.
KINDS: Final[Mapping[type, str]] = {
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


def is_size(rule: FieldRule) -> bool:
    """Whether a rule is WaveSpeed's ``"W*H"`` size.

    That is a string with ``minimum``/``maximum``, the bounds of each side.
    """
    return rule.types == frozenset({"string"}) and (
        rule.minimum is not None or rule.maximum is not None
    )


#: An enum's choices a message lists before it says how many there are in all.
_MAX_CHOICES_SHOWN: Final = 20


def allowed_text(rule: FieldRule) -> str:
    """What a rule allows, in words: ``an integer 1 ~ 50``, ``one of '5', '10'``."""
    if not rule.checked:
        return "any value"
    if is_size(rule) and rule.enum is None and rule.const is NO_VALUE:
        text = f'"W*H" with each dimension {_range_text(rule)}'
        return f"{text} or null" if rule.nullable else text
    if rule.const is not NO_VALUE:
        return f"exactly {show_value(rule.const)}"
    if rule.enum is not None:
        if not rule.enum:
            return "no value"
        shown = ", ".join(show_value(v) for v in rule.enum[:_MAX_CHOICES_SHOWN])
        more = len(rule.enum) - _MAX_CHOICES_SHOWN
        return f"one of {shown}" + (f", \u2026 ({len(rule.enum)} choices)" if more > 0 else "")
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
    one = unit.removesuffix("s")  # "1 character", "1 item"
    if lo is not None and hi is not None:
        if lo == hi:
            return f"of exactly {lo} {one if lo == 1 else unit}"
        return f"of {lo} ~ {hi} {unit}"
    if lo is not None:
        return f"of at least {lo} {one if lo == 1 else unit}"
    return f"of at most {hi} {one if hi == 1 else unit}"


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def show_value(value: Any) -> str:
    """A value as a message shows it: short, and never a line break or control character.

    A long string or list is cut before it is written out, not after.
    """
    text = _repr.repr(value)
    return text if len(text) <= 60 else text[:59] + "\u2026"


_repr: Final = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6
_repr.maxlevel = 3


def kind_name(value: Any) -> str:
    kind = json_kind(value)
    if kind is None:
        return f"a {type(value).__name__}"
    return {"integer": "an integer", "array": "a list", "object": "an object"}.get(
        kind, f"a {kind}"
    )


def label(text: str) -> str:
    """A name or path as a message shows it: a control or format character is escaped.

    So a name the server chose cannot act on the terminal the message is printed to.
    """
    return text if text.isprintable() else repr(text)[1:-1]


def join_path(path: str, key: str) -> str:
    """The path of a key inside ``path``: ``loras[1].scale``, ``opts['a key']``."""
    if not path:
        return key
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


# ---------------------------------------------------------------------------------------
# Checking


def json_kind(value: Any) -> str | None:
    """The JSON kind of a value (``None`` for null and for what is not JSON)."""
    kind = KINDS.get(value.__class__)
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
