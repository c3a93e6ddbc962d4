"""Checking a submit's inputs against a model's JSON Schema, the way the API does.

Only the keywords the catalogue uses are enforced: ``type``, ``enum``, ``minimum``,
``maximum``, ``minLength``, ``maxLength``, ``minItems``, ``maxItems``, ``items``,
``properties`` and ``required``. A string property with ``minimum``/``maximum`` is a
``"W*H"`` size whose each dimension must lie in that range (WaveSpeed's convention).

Unknown top-level keys are dropped without a word (the API bills the task with defaults);
the caller records which. A ``null`` value counts as absent. A problem is reported as one
message that names the field (``loras[0].scale``) and states what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from wavespeed_async.emulator._catalogue import EmulatedModel

__all__ = ["CONTROL_FIELDS", "Checked", "check_inputs", "check_passthrough", "parse_size"]

#: Fields every model takes in the body, whatever its schema lists.
CONTROL_FIELDS: Final = ("enable_sync_mode", "enable_base64_output", "enable_safety_checker")

_SIZE_RE: Final = re.compile(r"^(\d+)\*(\d+)$")
_TYPE_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def parse_size(value: str) -> tuple[int, int] | None:
    """``"1024*768"`` -> ``(1024, 768)``; ``None`` when the text is not ``W*H``."""
    m = _SIZE_RE.match(value)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


class Checked:
    """The outcome of a check: a problem, or the inputs kept and the keys dropped."""

    __slots__ = ("dropped", "inputs", "problem")

    def __init__(
        self, problem: str | None, inputs: dict[str, Any], dropped: tuple[str, ...]
    ) -> None:
        #: The message of the first problem found (a 400's message), else ``None``.
        self.problem = problem
        #: The inputs the task runs with (as sent: defaults are not filled in).
        self.inputs = inputs
        #: Top-level keys the model does not take, in the order they were sent.
        self.dropped = dropped


def check_inputs(model: EmulatedModel, body: Mapping[str, Any]) -> Checked:
    """Check ``body`` against ``model``'s schema; drop the keys it does not know."""
    problem = _check_control(body)
    if problem is not None:
        return Checked(problem, {}, ())
    schema = model.request_schema
    props = model.properties
    required = schema.get("required") or ()
    order = schema.get("x-order-properties") or list(props)
    for name in (*order, *(n for n in props if n not in order)):
        prop = props.get(name)
        if prop is None:
            continue
        value = body.get(name)
        if value is None:
            if name in required:
                return Checked(f"{name}: required ({allowed(prop)})", {}, ())
            continue
        problem = check_value(name, prop, value, required=name in required)
        if problem is not None:
            return Checked(problem, {}, ())
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in body.items():
        if name in props or name in CONTROL_FIELDS:
            if value is not None:
                kept[name] = value
        else:
            dropped.append(name)
    return Checked(None, kept, tuple(dropped))


def check_passthrough(body: Mapping[str, Any]) -> Checked:
    """A model outside the catalogue: only a non-empty ``prompt`` and the control fields."""
    problem = _check_control(body)
    if problem is None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            problem = "prompt: required, a non-empty string"
    if problem is not None:
        return Checked(problem, {}, ())
    return Checked(None, {k: v for k, v in body.items() if v is not None}, ())


def _check_control(body: Mapping[str, Any]) -> str | None:
    for name in CONTROL_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            return f"{name}: expected a boolean, got {type(value).__name__}; allowed: true or false"
    return None


def check_value(path: str, prop: Mapping[str, Any], value: Any, *, required: bool) -> str | None:
    """The message of the first problem of ``value`` at ``path``, or ``None``."""
    kind = prop.get("type")
    if not _is_type(value, kind):
        return (
            f"{path}: expected {_TYPE_NAMES.get(str(kind), kind)}, got "
            f"{type(value).__name__} {value!r:.60}; allowed: {allowed(prop)}"
        )
    if kind == "number" and not math.isfinite(value):
        return f"{path}: {value!r} is not allowed; allowed: {allowed(prop)}"
    enum = prop.get("enum")
    if enum is not None and not any(_same(value, choice) for choice in enum):
        return f"{path}: {value!r:.60} is not allowed; allowed: {allowed(prop)}"
    if kind == "string":
        return _check_string(path, prop, value, required=required)
    if kind == "array":
        return _check_array(path, prop, value)
    if kind == "object":
        return _check_object(path, prop, value)
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None and value < lo:
        return f"{path}: {value!r} is below the minimum; allowed: {allowed(prop)}"
    if hi is not None and value > hi:
        return f"{path}: {value!r} is above the maximum; allowed: {allowed(prop)}"
    return None


def _check_string(path: str, prop: Mapping[str, Any], value: str, *, required: bool) -> str | None:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None or hi is not None:
        size = parse_size(value)
        if size is None:
            return f"{path}: {value!r:.60} is not a size; allowed: {allowed(prop)}"
        if not all((lo is None or d >= lo) and (hi is None or d <= hi) for d in size):
            return f"{path}: {value!r:.60} is out of range; allowed: {allowed(prop)}"
    min_len, max_len = prop.get("minLength"), prop.get("maxLength")
    if min_len is not None and len(value) < min_len:
        return f"{path}: {len(value)} characters is too short; allowed: {allowed(prop)}"
    if max_len is not None and len(value) > max_len:
        return f"{path}: {len(value)} characters is too long; allowed: {allowed(prop)}"
    if required and not value.strip():
        return f"{path}: must not be empty"
    return None


def _check_array(path: str, prop: Mapping[str, Any], value: list[Any]) -> str | None:
    lo, hi = prop.get("minItems"), prop.get("maxItems")
    if lo is not None and len(value) < lo:
        return f"{path}: {len(value)} items is below the minimum; allowed: {allowed(prop)}"
    if hi is not None and len(value) > hi:
        return f"{path}: {len(value)} items is above the maximum; allowed: {allowed(prop)}"
    items = prop.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            problem = check_value(f"{path}[{i}]", items, item, required=False)
            if problem is not None:
                return problem
    return None


def _check_object(path: str, prop: Mapping[str, Any], value: dict[str, Any]) -> str | None:
    props = prop.get("properties") or {}
    required = prop.get("required") or ()
    for name, sub in props.items():
        item = value.get(name)
        if item is None:
            if name in required:
                return f"{path}.{name}: required ({allowed(sub)})"
            continue
        problem = check_value(f"{path}.{name}", sub, item, required=name in required)
        if problem is not None:
            return problem
    return None


def allowed(prop: Mapping[str, Any]) -> str:
    """What ``prop`` allows, for a human: ``1 ~ 4``, ``one of '1:1', '16:9'``..."""
    kind = prop.get("type")
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if prop.get("enum") is not None:
        return "one of " + ", ".join(repr(c) for c in prop["enum"])
    if kind == "string" and (lo is not None or hi is not None):
        return f'"W*H" with each dimension in {_range(lo, hi)}'
    if kind in ("integer", "number") and (lo is not None or hi is not None):
        return _range(lo, hi)
    if kind == "string" and ("minLength" in prop or "maxLength" in prop):
        return f"a string of {_range(prop.get('minLength'), prop.get('maxLength'))} characters"
    if kind == "array" and ("minItems" in prop or "maxItems" in prop):
        return f"an array of {_range(prop.get('minItems'), prop.get('maxItems'))} items"
    return _TYPE_NAMES.get(str(kind), f"a {kind}")


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{_num(lo)} ~ {_num(hi)}"
    if lo is not None:
        return f">= {_num(lo)}"
    return f"<= {_num(hi if hi is not None else 0)}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)


def _is_type(value: Any, kind: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True  # no type (or one we do not know): anything goes


def _same(value: Any, choice: Any) -> bool:
    # JSON has no 5 == true: keep booleans and numbers apart.
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)
