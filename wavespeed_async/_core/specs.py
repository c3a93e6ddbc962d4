"""Input specifications of the models we know, as the product pages state them.

One table serves both sides: the client checks inputs before sending anything, and the
emulator answers 400 for the same inputs. Each check returns a message that names the field
and the allowed range, or ``None`` when the value is fine.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ASPECT_RATIOS",
    "MODEL_SPECS",
    "FieldSpec",
    "ModelSpec",
    "check_input",
    "parse_size",
    "unknown_fields",
]

#: Aspect ratios FLUX.1 Kontext [pro] accepts.
ASPECT_RATIOS: Final = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")

#: Sizes are written ``"W*H"`` (the product pages' form); the API refuses ``"1024x768"``.
_SIZE_RE: Final = re.compile(r"^(\d+)\*(\d+)$")

# Control fields every model accepts in the body (see the API notes).
_CONTROL_FIELDS: Final = {
    "enable_sync_mode": bool,
    "enable_base64_output": bool,
    "enable_safety_checker": bool,
}


def parse_size(value: str) -> tuple[int, int] | None:
    """``"1024*768"`` -> ``(1024, 768)``; ``None`` when the text is not ``W*H``."""
    m = _SIZE_RE.match(value)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class FieldSpec:
    """One input field: its JSON type, default, and allowed values."""

    name: str
    type: type
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    #: For ``W*H`` sizes: the allowed range of each dimension.
    size_range: tuple[int, int] | None = None
    description: str = ""

    @property
    def allowed(self) -> str:
        """A human-readable statement of what is allowed."""
        if self.size_range is not None:
            lo, hi = self.size_range
            return f'"W*H" with each dimension in {lo} ~ {hi}'
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.minimum is not None and self.maximum is not None:
            return f"{_num(self.minimum)} ~ {_num(self.maximum)}"
        return f"a {_type_name(self.type)}"

    def check(self, value: Any) -> str | None:
        """Return an error message naming this field, or ``None`` if ``value`` is allowed."""
        if not _is_type(value, self.type):
            return (
                f"{self.name}: expected {_type_name(self.type)}, got "
                f"{type(value).__name__} {value!r:.60}; allowed: {self.allowed}"
            )
        if self.type is float and not math.isfinite(value):
            return f"{self.name}: {value!r} is not allowed; allowed: {self.allowed}"
        if self.size_range is not None:
            parsed = parse_size(value)
            lo, hi = self.size_range
            if parsed is None:
                return f"{self.name}: {value!r:.60} is not a size; allowed: {self.allowed}"
            if not all(lo <= d <= hi for d in parsed):
                return f"{self.name}: {value!r:.60} is out of range; allowed: {self.allowed}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}: {value!r:.60} is not allowed; allowed: {self.allowed}"
        if self.minimum is not None and value < self.minimum:
            return f"{self.name}: {value!r} is below the minimum; allowed: {self.allowed}"
        if self.maximum is not None and value > self.maximum:
            return f"{self.name}: {value!r} is above the maximum; allowed: {self.allowed}"
        if self.type is str and self.required and not value.strip():
            return f"{self.name}: must not be empty"
        return None


@dataclass(frozen=True)
class ModelSpec:
    """A model's path and its input fields."""

    model: str
    fields: tuple[FieldSpec, ...]
    by_name: Mapping[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    def defaults(self) -> dict[str, Any]:
        """The documented defaults of the optional fields that have one."""
        return {f.name: f.default for f in self.fields if f.default is not None}


def check_input(
    spec: ModelSpec | None, data: Mapping[str, Any], *, require_prompt: bool = True
) -> tuple[str, str] | None:
    """Check a request body against a model's spec.

    Returns ``(field, message)`` for the first problem found, or ``None``. Unknown fields
    pass (the server ignores them); for an unknown model (``spec is None``) only the types
    of the control fields are checked, and, with ``require_prompt``, that a non-empty
    ``prompt`` is present.
    """
    for name, typ in _CONTROL_FIELDS.items():
        if name in data and not isinstance(data[name], typ):
            return name, (
                f"{name}: expected a boolean, got {type(data[name]).__name__}; "
                "allowed: true or false"
            )
    if spec is None:
        if not require_prompt:
            return None
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt", "prompt: required, a non-empty string"
        return None
    for f in spec.fields:
        if f.name not in data or data[f.name] is None:
            if f.required:
                return f.name, f"{f.name}: required ({f.allowed})"
            continue
        problem = f.check(data[f.name])
        if problem is not None:
            return f.name, problem
    return None


def unknown_fields(spec: ModelSpec, data: Mapping[str, Any]) -> list[str]:
    """Messages for the fields of ``data`` that ``spec``'s model does not take.

    The server ignores such fields without a word, so a misspelt one (``aspect_ration``)
    silently runs, and is billed, with the default. Each message names the field, the
    model, and the closest known field when there is one.
    """
    known = sorted({*spec.by_name, *_CONTROL_FIELDS})
    messages: list[str] = []
    for name in data:
        if name in spec.by_name or name in _CONTROL_FIELDS:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}? " if close else ""
        messages.append(
            f"{name}: not a field of {spec.model}; {hint}the API ignores it "
            f"(known fields: {', '.join(known)})"
        )
    return messages


def _is_type(value: Any, typ: type) -> bool:
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


def _type_name(typ: type) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(typ, typ.__name__)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)


_SEED = FieldSpec(
    "seed",
    int,
    default=-1,
    minimum=-1,
    maximum=9_999_999_999,
    description="-1 picks a random seed; the same seed and prompt give the same image.",
)

FLUX_KONTEXT_DEV: Final = ModelSpec(
    "wavespeed-ai/flux-kontext-dev",
    (
        FieldSpec("prompt", str, required=True, description="The edit to make."),
        FieldSpec("image", str, description="URL of the image to edit."),
        FieldSpec("size", str, default="1024*1024", size_range=(512, 1536)),
        FieldSpec("num_inference_steps", int, default=28, minimum=1, maximum=50),
        FieldSpec("guidance_scale", float, default=2.5, minimum=1.0, maximum=20.0),
        FieldSpec("num_images", int, default=1, minimum=1, maximum=4),
        _SEED,
        FieldSpec("enable_base64_output", bool, default=False),
        FieldSpec("enable_safety_checker", bool, default=True),
    ),
)

FLUX_KONTEXT_PRO_T2I: Final = ModelSpec(
    "wavespeed-ai/flux-kontext-pro/text-to-image",
    (
        FieldSpec("prompt", str, required=True, description="What to draw."),
        FieldSpec("aspect_ratio", str, default="1:1", choices=ASPECT_RATIOS),
        FieldSpec("num_images", int, default=1, minimum=1, maximum=4),
        FieldSpec("seed", int, minimum=-1, maximum=9_999_999_999),
        FieldSpec("guidance_scale", float, default=3.5, minimum=1.0, maximum=10.0),
        FieldSpec(
            "safety_tolerance",
            str,
            default="2",
            choices=("1", "2", "3", "4", "5"),
            description="1 is the most strict, 5 the most permissive.",
        ),
    ),
)

#: Specs by model path.
MODEL_SPECS: Final[Mapping[str, ModelSpec]] = {
    s.model: s for s in (FLUX_KONTEXT_DEV, FLUX_KONTEXT_PRO_T2I)
}
