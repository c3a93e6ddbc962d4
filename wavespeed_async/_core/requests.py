"""Typed requests for the models we know, and the checks every request passes before sending.

A typed request is a frozen msgspec Struct whose fields and defaults are the model page's
own; it checks itself when built, so a bad value fails at once with a
:class:`~wavespeed_async.ValidationError` that names the field and the allowed range::

    >>> FluxKontextDev(prompt="Make it red", num_inference_steps=80)
    Traceback (most recent call last):
    ...
    ValidationError: num_inference_steps: 80 is above the maximum; allowed: 1 ~ 50

Plain dicts for any model go through :func:`validate_input` (full checks for a known
model, control-field types and JSON-ability for any other), and :func:`coerce_request`
turns either form into the ``(model path, JSON body)`` pair the client sends.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.specs import (
    FLUX_KONTEXT_DEV,
    FLUX_KONTEXT_PRO_T2I,
    MODEL_SPECS,
    ModelSpec,
    check_input,
    unknown_fields,
)

__all__ = [
    "TYPED_REQUESTS",
    "FluxKontextDev",
    "FluxKontextProTextToImage",
    "TypedRequest",
    "UnknownFieldWarning",
    "check_with_spec",
    "coerce_request",
    "request_body",
    "validate_input",
    "validate_model_path",
]

# One path segment: letters, digits, ".", "_", "-"; starting with a letter or digit (so
# neither "." nor ".." can be a segment).
_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_MODEL_PATH_RE: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{1,4}}")
# First segments that are API endpoints, not model owners: a "model" there would POST a
# generation request to some other endpoint.
_RESERVED_OWNERS: Final = frozenset({"api", "predictions", "media", "webhook", "balance"})
_MAX_DEPTH: Final = 32


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


class UnknownFieldWarning(UserWarning):
    """An input field that a known model does not take (e.g. a misspelt ``aspect_ration``).

    The API ignores such fields without an error, so the task runs (and is billed) with
    the field's default. Turn the warning into an error with
    ``warnings.simplefilter("error", UnknownFieldWarning)`` (or pytest's
    ``filterwarnings = ["error::wavespeed_async.UnknownFieldWarning"]``).
    """


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


def _struct_fields(struct: msgspec.Struct, *, omit_none: bool = False) -> dict[str, Any]:
    """A Struct's fields by wire name (``msgspec.field(name=...)``, e.g. ``class``)."""
    names = zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True)
    values = ((key, getattr(struct, name)) for name, key in names)
    return {key: v for key, v in values if not (omit_none and v is None)}


def validate_model_path(model: object) -> str:
    """Check a model path such as ``"wavespeed-ai/flux-kontext-dev"`` and return it.

    A model path is ``owner/model`` or ``owner/model/variant`` (up to 5 segments) of
    letters, digits, ``.``, ``_`` and ``-``: no leading or trailing slash, no ``..``, no
    spaces, no ``?`` or ``#``, no scheme or host, no ``/api/v3`` prefix.

    Raises:
        ValidationError: ``field="model"``, with a message saying what is wrong.
    """
    allowed = '"owner/model" or "owner/model/variant", e.g. "wavespeed-ai/flux-kontext-dev"'

    def bad(why: str) -> ValidationError:
        return ValidationError(
            "model", f"model: {model!r:.80} {why}; allowed: {allowed}", allowed=allowed
        )

    if not isinstance(model, str):
        raise bad(f"is a {type(model).__name__}, not a model path string or a typed request")
    if not model:
        raise bad("is empty")
    if "://" in model:
        raise bad("is a URL; pass only the model path (the client adds the base URL)")
    if model.startswith("/"):
        raise bad("must not start with '/'")
    if _MODEL_PATH_RE.fullmatch(model) is None:
        raise bad("is not a model path")
    if model.split("/", 1)[0].lower() in _RESERVED_OWNERS:
        raise bad("names an API endpoint, not a model (leave out any '/api/v3' prefix)")
    return model


def _to_json(value: Any, where: str, field: str, depth: int = 0) -> Any:
    """A fresh copy of ``value`` made of JSON types only, or ValidationError naming the field."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                field, f"{where}: {value!r} is not allowed; allowed: a finite number"
            )
        return value
    if depth >= _MAX_DEPTH:
        raise ValidationError(field, f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, msgspec.Struct):
        # A typed item inside a request (a LoRA of a generated request): its fields under
        # their wire names, None left out, as for the request itself.
        value = _struct_fields(value, omit_none=True)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    field, f"{where}: key {key!r:.40} is not allowed; allowed: string keys"
                )
            out[key] = _to_json(item, f"{where}.{key}", field, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{i}]", field, depth + 1) for i, item in enumerate(value)]
    raise ValidationError(
        field,
        f"{where}: a {type(value).__name__} is not JSON; allowed: string, number, boolean, "
        "null, list or object",
    )


_OTHER_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*[xX,\u00d7]\s*(\d+)\s*$")


def _size_hint(spec: ModelSpec, data: Mapping[str, Any]) -> None:
    """A hint for a ``(width, height)`` tuple or a ``"1024x768"`` string given for ``"W*H"``."""
    for f in spec.fields:
        if f.size_range is None:
            continue
        value = data.get(f.name)
        other = _OTHER_SIZE_RE.match(value) if isinstance(value, str) else None
        if other is not None:
            w, h = other.groups()
            raise ValidationError(
                f.name,
                f'{f.name}: {value!r} is not allowed; write it "{w}*{h}"; allowed: {f.allowed}',
                allowed=f.allowed,
            )
        if (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(d, int) and not isinstance(d, bool) for d in value)
        ):
            w, h = value
            raise ValidationError(
                f.name,
                f'{f.name}: expected a string such as "1024*768", got {type(value).__name__} '
                f'{value!r}; pass {f.name}="{w}*{h}"; allowed: {f.allowed}',
                allowed=f.allowed,
            )


def _json_input(input: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh body of JSON values from an input mapping (no model's checks yet)."""
    if not isinstance(input, Mapping):
        raise ValidationError(
            "input", f"input: a {type(input).__name__} is not allowed; allowed: a dict of inputs"
        )
    body: dict[str, Any] = {}
    for key, value in input.items():
        if not isinstance(key, str):
            raise ValidationError(
                "input", f"input: key {key!r:.40} is not allowed; allowed: string field names"
            )
        body[key] = _to_json(value, key, key)
    return body


def check_with_spec(model: str, body: Mapping[str, Any]) -> None:
    """Check a JSON body against the client's built-in spec of ``model``, if it has one.

    The checks of :func:`validate_input` after the JSON conversion: every field of a model
    in the spec table (the FLUX.1 Kontext models), with an :class:`UnknownFieldWarning`
    per field the model does not take; the control fields' types for any other model.
    The model catalogue's check, where there is one, replaces this.

    Raises:
        ValidationError: The first problem found.
    """
    spec = MODEL_SPECS.get(model)
    if spec is None:
        # Another model: its fields are unknown (it may not even take a prompt), so only
        # the control fields every model shares are checked.
        problem = check_input(None, body, require_prompt=False)
        if problem is not None:
            raise ValidationError(problem[0], problem[1], allowed="a boolean")
        return
    _size_hint(spec, body)
    problem = check_input(spec, body)
    if problem is None:
        for message in unknown_fields(spec, body):
            warnings.warn(message, UnknownFieldWarning, stacklevel=_caller_stacklevel())
        return
    field, message = problem
    f = spec.by_name.get(field)
    allowed = f.allowed if f is not None else "a boolean"
    if f is None and "allowed" not in message:
        message = f"{message}; allowed: {allowed}"
    raise ValidationError(field, message, allowed=allowed)


def _validated(model: str, input: Mapping[str, Any]) -> dict[str, Any]:
    body = _json_input(input)
    check_with_spec(model, body)
    return body


def validate_input(model: str, input: Mapping[str, Any]) -> None:
    """Check a plain input dict for ``model`` before anything is sent.

    For a model in the spec table (the typed requests' models) every field is checked:
    required fields, types, ranges, choices and sizes. For any other model only what is
    common to all models is checked: the control fields (``enable_sync_mode``,
    ``enable_base64_output``, ``enable_safety_checker``) must be booleans; no field is
    required, since another model may take no prompt. In every case each value must be
    JSON: strings, finite numbers, booleans, null, lists and string-keyed dicts (a set,
    bytes, NaN or any other object is refused). Unknown fields pass, since the server
    ignores them; for a known model each one emits an :class:`UnknownFieldWarning`.

    Raises:
        ValidationError: ``.field`` names the offending field and the message says what
            is allowed (``.allowed`` too, for a field in the spec table).
    """
    _validated(model, input)


class TypedRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of typed requests: a model path (``MODEL``) and the inputs as fields.

    Subclass it for another model: set ``MODEL`` and declare the fields with the model
    page's names and defaults. A request checks itself when built (see
    :func:`validate_input`) and :meth:`to_input` gives the JSON body.
    """

    MODEL: ClassVar[str]

    def __post_init__(self) -> None:
        model = getattr(type(self), "MODEL", None)
        if not isinstance(model, str):
            raise TypeError(f"{type(self).__name__} must set MODEL, the model path")
        _validated(model, self._fields())

    def _fields(self) -> dict[str, Any]:
        return _struct_fields(self)

    def to_input(self) -> dict[str, Any]:
        """The request body: every field, ``None`` values left out. A fresh dict each call.

        Typed items inside it become dicts.
        """
        return {
            k: v if isinstance(v, (str, int, float)) else _to_json(v, k, k)
            for k, v in self._fields().items()
            if v is not None
        }


class FluxKontextDev(TypedRequest, frozen=True, kw_only=True, omit_defaults=False):
    """FLUX.1 Kontext [dev]: edit an image with a text prompt.

    Attributes:
        prompt: The edit to make (required, non-empty).
        image: URL of the image to edit (upload a local file first).
        size: Output size as ``"W*H"``, each dimension 512 ~ 1536.
        num_inference_steps: 1 ~ 50.
        guidance_scale: How closely to follow the prompt, 1.0 ~ 20.0.
        num_images: 1 ~ 4.
        seed: -1 ~ 9999999999; -1 picks a random seed.
        enable_base64_output: Return raw base64 instead of URLs (not with a webhook).
        enable_safety_checker: Run the safety checker.
    """

    MODEL: ClassVar[str] = FLUX_KONTEXT_DEV.model

    prompt: str
    image: str | None = None
    size: str = "1024*1024"
    num_inference_steps: int = 28
    guidance_scale: float = 2.5
    num_images: int = 1
    seed: int = -1
    enable_base64_output: bool = False
    enable_safety_checker: bool = True


class FluxKontextProTextToImage(TypedRequest, frozen=True, kw_only=True, omit_defaults=False):
    """FLUX.1 Kontext [pro] text-to-image: draw an image from a text prompt.

    Attributes:
        prompt: What to draw (required, non-empty).
        aspect_ratio: One of 21:9, 16:9, 4:3, 3:2, 1:1, 2:3, 3:4, 9:16, 9:21.
        num_images: 1 ~ 4.
        seed: -1 ~ 9999999999, or ``None`` (left out: the server picks one).
        guidance_scale: How closely to follow the prompt, 1.0 ~ 10.0.
        safety_tolerance: ``"1"`` (most strict) ~ ``"5"`` (most permissive), a string.
        enable_base64_output: Return raw base64 instead of URLs (not with a webhook).
    """

    MODEL: ClassVar[str] = FLUX_KONTEXT_PRO_T2I.model

    prompt: str
    aspect_ratio: str = "1:1"
    num_images: int = 1
    seed: int | None = None
    guidance_scale: float = 3.5
    safety_tolerance: str = "2"
    enable_base64_output: bool = False


#: Typed request classes by model path.
TYPED_REQUESTS: Final[Mapping[str, type[TypedRequest]]] = {
    cls.MODEL: cls for cls in (FluxKontextDev, FluxKontextProTextToImage)
}


def request_body(
    model_or_request: str | TypedRequest,
    input: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """What a caller passed to ``submit``/``run``, as ``(model path, JSON body)``.

    This runs before any model's checks: the path is checked, and the body made of JSON values.

    The model's checks follow: the catalogue's (``Client.submit``), or the built-in spec's
    (:func:`check_with_spec`, which :func:`coerce_request` adds).

    Raises:
        ValidationError: A bad path, a value that is not JSON, or a wrong combination (a
            typed request with an input dict; a model path without one).
    """
    if isinstance(model_or_request, TypedRequest):
        if input is not None:
            raise ValidationError(
                "input",
                "input: not allowed with a typed request (its fields are the input); "
                "pass either a typed request or a model path and an input dict",
            )
        return validate_model_path(type(model_or_request).MODEL), model_or_request.to_input()
    given: object = input  # the annotation says a Mapping; a caller may pass anything
    if isinstance(given, TypedRequest):
        name = type(given).__name__
        raise ValidationError(
            "input",
            f"input: a {name} is a typed request, which carries its model "
            f"({type(given).MODEL}); pass a typed request alone: run({name}(...)), "
            "without a model path",
        )
    # validate_model_path also refuses what is neither a string nor a typed request.
    model = validate_model_path(model_or_request)
    if input is None:
        raise ValidationError(
            "input",
            f"input: required with a model path; pass a dict of {model}'s inputs, "
            "or a typed request instead",
        )
    return model, _json_input(input)


def coerce_request(
    model_or_request: str | TypedRequest,
    input: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Turn what a caller passed to ``submit``/``run`` into ``(model path, JSON body)``.

    Accepts a typed request alone, or a model path with an input dict. Everything is
    checked (see :func:`validate_model_path` and :func:`validate_input`) before anything
    is sent.

    Returns:
        The model path and a fresh body dict (a deep copy: later changes to the caller's
        dict do not change it, and the caller may add control fields to it).

    Raises:
        ValidationError: A bad path or input, or a wrong combination (a typed request
            with an input dict; a model path without one).
    """
    model, body = request_body(model_or_request, input)
    check_with_spec(model, body)
    return model, body
