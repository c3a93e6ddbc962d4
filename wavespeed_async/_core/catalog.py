"""The model catalogue (``GET /api/v3/models``), decoded leniently into typed records.

The catalogue's shape is not a documented contract, so every entry is read on its own: an
entry without a usable ``model_id`` is skipped, a field of the wrong type reads as "not
given", an odd request schema reads as ``None``, and each of these is noted in
:attr:`CatalogDecode.problems` instead of failing the whole answer. Only an answer that is
not a catalogue at all (not JSON, an envelope ``code`` other than 200, ``data`` not a list)
raises :class:`~wavespeed_async._core.errors.DecodeError`.

Prices are exact: ``base_price`` is read from the JSON number's own digits into a
:class:`~decimal.Decimal`, never through a float.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from wavespeed_async._core.errors import DecodeError

__all__ = [
    "RAW_ANSWER",
    "CatalogDecode",
    "CatalogProblem",
    "Model",
    "RawAnswer",
    "decode_models",
    "field_order",
]

# A model path as the client accepts one: ``owner/model[/variant...]``, segments of
# letters, digits, ".", "_", "-", starting with a letter or digit (never "." or "..").
_SEGMENT: Final = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_MODEL_ID_RE: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{1,4}}")
# A JSON number's text; anything else in ``base_price`` (true, "abc", {}) is not a price.
_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
#: Every exception msgspec may raise on bytes that are not the JSON it expects: invalid
#: UTF-8 inside a string raises UnicodeDecodeError, very deep nesting RecursionError.
_DECODE_FAILURES: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class Model(msgspec.Struct, frozen=True):
    """One model of the catalogue.

    Attributes:
        id: The model path, ``owner/name[/variant]`` (the catalogue's ``model_id``).
        name: Display name (``""`` when not given).
        description: What the model does (``""`` when not given).
        type: The kind of model, e.g. ``"text-to-image"`` (``""`` when not given).
        base_price: USD per task before any formula, exact; ``None`` when not given.
        sort_order: The catalogue's display rank, or ``None``.
        formula: The JSONata price formula over the inputs, or ``None``.
        input_schema: The request JSON Schema, as decoded (shared: do not mutate it), or
            ``None`` when the entry has none or it is not an object.
        field_order: The input fields in the order the model page lists them
            (``x-order-properties``, then any property it leaves out).
    """

    id: str
    name: str = ""
    description: str = ""
    type: str = ""
    base_price: Decimal | None = None
    sort_order: int | None = None
    formula: str | None = None
    input_schema: dict[str, Any] | None = None
    field_order: tuple[str, ...] = ()


class CatalogProblem(msgspec.Struct, frozen=True):
    """Something odd in one catalogue entry: the entry was skipped or a field ignored.

    Attributes:
        index: The entry's position in ``data``.
        model_id: The entry's model id when it has a usable one, else ``None``.
        message: What was wrong and what was done about it.
    """

    index: int
    model_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"data[{self.index}]" + (f" ({self.model_id})" if self.model_id else "")
        return f"{where}: {self.message}"


class CatalogDecode(msgspec.Struct, frozen=True):
    """The models decoded from one catalogue answer, and what was odd in it.

    Attributes:
        models: The usable entries, in the catalogue's order (first of each id).
        problems: One note per skipped entry or ignored field.
    """

    models: tuple[Model, ...]
    problems: tuple[CatalogProblem, ...] = ()

    def by_id(self) -> dict[str, Model]:
        """The models keyed by id."""
        return {m.id: m for m in self.models}


class _Envelope(msgspec.Struct):
    code: Any = None
    message: Any = None
    data: msgspec.Raw = msgspec.Raw()


class _Entry(msgspec.Struct):
    # Every field untyped: a wrong type is noted per field, never a failure of the entry.
    model_id: Any = None
    name: Any = None
    description: Any = None
    type: Any = None
    # Kept raw so the price is read from the number's own digits.
    base_price: msgspec.Raw = msgspec.Raw()
    sort_order: Any = None
    formula: Any = None
    api_schema: Any = None


_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_entries_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_entry_decoder: Final = msgspec.json.Decoder(_Entry)


class _Head(msgspec.Struct):
    code: Any = None
    message: Any = None


_head_decoder: Final = msgspec.json.Decoder(_Head)


class RawAnswer:
    """An answer's envelope ``code`` and ``message``, with its whole body as ``data``.

    What :data:`RAW_ANSWER` decodes: the API caller classifies the answer by its code (and
    retries it) as any other, and the body is kept as it came, to be decoded leniently by
    :func:`decode_models` and stored by the catalogue cache.
    """

    __slots__ = ("code", "data", "message")

    def __init__(self, code: int | str | None, message: str | None, data: bytes) -> None:
        self.code = code
        self.message = message
        self.data = data


class _RawDecoder:
    """A decoder for the API caller that keeps the body (see :class:`RawAnswer`)."""

    def decode(self, buf: bytes, /) -> RawAnswer:
        head = _head_decoder.decode(buf)  # not JSON: a msgspec.DecodeError, as any decoder
        raw = head.code
        code = raw if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
        message = head.message if isinstance(head.message, str) else None
        return RawAnswer(code, message, bytes(buf))


#: Decodes an answer into a :class:`RawAnswer` (``Api.call(..., RAW_ANSWER)``).
RAW_ANSWER: Final = _RawDecoder()


def decode_models(body: bytes) -> CatalogDecode:
    """Decode a ``GET /api/v3/models`` answer.

    Args:
        body: The raw answer bytes (the ``{code, message, data}`` envelope).

    Returns:
        The usable models and the problems found in the others; never fails on one entry.

    Raises:
        DecodeError: ``body`` is not JSON, not an envelope, its ``code`` is not 200, or
            its ``data`` is not a list.
    """
    text = _excerpt(body)
    try:
        envelope = _envelope_decoder.decode(body)
    except _DECODE_FAILURES as exc:
        raise DecodeError(
            f"the model catalogue is not an envelope of JSON ({_reason(exc)})", body=text
        ) from None
    code = envelope.code
    if code is not None and code not in (200, "200"):
        message = envelope.message if isinstance(envelope.message, str) else ""
        raise DecodeError(
            f"the model catalogue answered code {code!r:.40}: {message!r:.200}", body=text
        )
    try:
        raw_entries = _entries_decoder.decode(envelope.data) if envelope.data else None
    except _DECODE_FAILURES:
        raw_entries = None
    if raw_entries is None:
        raise DecodeError("the model catalogue's data is not a list of models", body=text)

    models: list[Model] = []
    problems: list[CatalogProblem] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_entries):
        model = _decode_entry(index, raw, problems)
        if model is None:
            continue
        if model.id in seen:
            problems.append(CatalogProblem(index, model.id, "a second entry for this id; skipped"))
            continue
        seen.add(model.id)
        models.append(model)
    return CatalogDecode(tuple(models), tuple(problems))


def field_order(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The property names of ``schema`` in the order the model page lists them.

    ``x-order-properties`` first (names it lists that are not properties are dropped),
    then the properties it leaves out, in their own order. ``()`` when ``schema`` has no
    ``properties`` object.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return ()
    names = [name for name in properties if isinstance(name, str)]
    listed = schema.get("x-order-properties")
    if not isinstance(listed, list):
        return tuple(names)
    present = set(names)
    order: list[str] = []
    for name in listed:
        if isinstance(name, str) and name in present and name not in order:
            order.append(name)
    placed = set(order)
    order.extend(name for name in names if name not in placed)
    return tuple(order)


def _decode_entry(index: int, raw: msgspec.Raw, problems: list[CatalogProblem]) -> Model | None:
    try:
        entry = _entry_decoder.decode(raw)
    except _DECODE_FAILURES:
        problems.append(CatalogProblem(index, None, "not an object; skipped"))
        return None
    model_id = entry.model_id
    if not isinstance(model_id, str) or _MODEL_ID_RE.fullmatch(model_id) is None:
        if model_id is None:
            what = "no model_id"
        elif isinstance(model_id, str):
            what = f"model_id {model_id!r:.80} is not a model path"
        else:
            what = f"model_id is a {_json_type(model_id)}, not a string"
        problems.append(CatalogProblem(index, None, f"{what}; skipped"))
        return None

    def note(message: str) -> None:
        problems.append(CatalogProblem(index, model_id, message))

    def text(name: str, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        note(f"{name} is a {_json_type(value)}, not a string; ignored")
        return None

    sort_order = entry.sort_order
    if sort_order is not None and not _is_int(sort_order):
        note(f"sort_order is a {_json_type(sort_order)}, not an integer; ignored")
        sort_order = None
    schema = _request_schema(entry.api_schema, note)
    return Model(
        id=model_id,
        name=text("name", entry.name) or "",
        description=text("description", entry.description) or "",
        type=text("type", entry.type) or "",
        base_price=_price(bytes(entry.base_price), note),
        sort_order=sort_order,
        formula=text("formula", entry.formula),
        input_schema=schema,
        field_order=field_order(schema) if schema is not None else (),
    )


def _price(raw: bytes, note: Callable[[str], None]) -> Decimal | None:
    """``base_price`` from its JSON text: a number, or a string holding one; else ``None``."""
    if not raw or raw == b"null":
        return None
    digits = raw.decode("utf-8", "replace")
    if digits.startswith('"'):
        try:
            inner = msgspec.json.decode(raw)
        except _DECODE_FAILURES:
            inner = None
        digits = inner.strip() if isinstance(inner, str) else ""
    if _NUMBER_RE.fullmatch(digits) is not None:
        try:
            price = Decimal(digits)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            price = None
        if price is not None and price.is_finite() and price >= 0:
            return price
    note(f"base_price {raw[:40].decode('utf-8', 'replace')} is not a price; ignored")
    return None


def _request_schema(api_schema: Any, note: Callable[[str], None]) -> dict[str, Any] | None:
    """``api_schema.api_schemas[0].request_schema`` when it is an object, else ``None``."""
    if api_schema is None:
        return None
    schemas = api_schema.get("api_schemas") if isinstance(api_schema, dict) else None
    first = schemas[0] if isinstance(schemas, list) and schemas else None
    schema = first.get("request_schema") if isinstance(first, dict) else None
    if isinstance(schema, dict):
        return schema
    if schema is None and isinstance(first, dict):
        return None  # an API entry without a request schema: nothing to check against
    note("api_schema has no request_schema object; inputs will not be checked")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]!r}"


def _excerpt(body: bytes) -> str:
    return body[:2000].decode("utf-8", "replace")
