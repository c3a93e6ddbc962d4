"""The emulator's requests and answers, independent of any socket, and their helpers.

Handlers take a :class:`Request` and return an :class:`EmulatedResponse`, or raise
:class:`ResetBeforeRequest` / :class:`ResetAfterRequest` for a connection reset. The
aiohttp server (``_server``) and the in-process entry ``Emulator.handle`` both carry out
exactly these outcomes, so both serve the same answers.
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "BodyTooLarge",
    "EmulatedDisconnect",
    "EmulatedResponse",
    "Handler",
    "Request",
    "ResetAfterRequest",
    "ResetBeforeRequest",
    "authorized",
    "encode",
    "envelope",
    "error",
    "iso",
    "json_object",
    "json_reply",
    "paging",
    "parse_iso",
    "shutting_down",
    "time_field",
    "unauthorized",
]

#: JSON with money (``Decimal``) written as numbers, as the API writes prices.
encode: Final = msgspec.json.Encoder(decimal_format="number").encode


@dataclass(frozen=True)
class EmulatedResponse:
    """An answer of the emulator: HTTP status, headers and body bytes."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __repr__(self) -> str:
        kind = self.headers.get("Content-Type", "")
        return f"EmulatedResponse(status={self.status}, {kind or 'no type'}, {len(self.body)} B)"


class EmulatedDisconnect(ConnectionResetError):
    """The connection was reset: no answer comes (what a socket would show as ECONNRESET).

    ``request_processed`` tells the two cases apart, which a real client cannot do.
    """

    request_processed: bool = False


class ResetBeforeRequest(EmulatedDisconnect):
    """Reset before the request was read: it never reached the server (nothing happened)."""

    request_processed = False


class ResetAfterRequest(EmulatedDisconnect):
    """Reset after the request was processed: its answer is lost (a submit's task exists)."""

    request_processed = True


class BodyTooLarge(Exception):
    """The request body is over the server's limit (answered 413)."""


Handler = Callable[["Request"], Awaitable[EmulatedResponse]]


class Request:
    """One request as the handlers see it: method, target, headers, and a body to read."""

    __slots__ = ("_read", "headers", "host", "match", "method", "path", "query", "scheme")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | CIMultiDictProxy[str],
        *,
        scheme: str,
        host: str,
        read: Callable[[], Awaitable[bytes]],
    ) -> None:
        parts = urlsplit(target)
        self.method = method.upper()
        self.path = unquote(parts.path) or "/"
        # Like aiohttp's ``request.query``: the first value of each key.
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(key, value)
        self.query = query
        self.headers = headers if isinstance(headers, CIMultiDictProxy) else CIMultiDict(headers)
        self.scheme = scheme
        self.host = self.headers.get("Host") or host
        self.match: dict[str, str] = {}
        self._read = read

    @property
    def base(self) -> str:
        """``scheme://host`` as the client addressed us: the base of the URLs we hand out."""
        return f"{self.scheme}://{self.host}"

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return int(raw) if raw is not None and raw.isdigit() else None

    async def read(self) -> bytes:
        """The whole body; :class:`BodyTooLarge` over the server's limit."""
        return await self._read()


def iso(wall: float) -> str:
    """A wall-clock time as the API writes it: RFC 3339 with nanoseconds, in UTC."""
    ns = int(wall * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


_ISO_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_iso(text: str) -> float | None:
    """Unix seconds of an ISO 8601 time (a date alone, or with a time; no zone = UTC)."""
    m = _ISO_RE.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        parsed = time.strptime(
            f"{year}-{month}-{day} {hour or '00'}:{minute or '00'}:{second or '00'}",
            "%Y-%m-%d %H:%M:%S",
        )
    except ValueError:
        return None
    wall = float(calendar.timegm(parsed))
    if frac:
        wall += int(frac) / 10 ** len(frac)
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        wall -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return wall


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def json_reply(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> EmulatedResponse:
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    return EmulatedResponse(status, all_headers, encode(body))


def error(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, code: int | None = None
) -> EmulatedResponse:
    """An error envelope; its ``code`` is the HTTP status unless given."""
    return json_reply(
        status,
        {"code": status if code is None else code, "message": message, "data": None},
        headers,
    )


def shutting_down() -> EmulatedResponse:
    """The answer to a request held (stall, sync wait) when the emulator closes."""
    return error(503, "emulator shutting down")


def authorized(request: Request, api_key: str | None) -> bool:
    """A non-empty Bearer key (``api_key`` itself unless that is ``None``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    return api_key is None or hmac.compare_digest(key.encode(), api_key.encode())


def unauthorized() -> EmulatedResponse:
    return error(401, "Unauthorized: missing or invalid API key")


async def json_object(
    request: Request, shape: str, *, empty_ok: bool = False
) -> dict[str, Any] | EmulatedResponse:
    """The body as a JSON object, or the 400 that says it is not one (``shape``: example).

    With ``empty_ok`` an empty body counts as ``{}``.
    """
    raw = await request.read()
    if empty_ok and not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return error(400, f"body: not valid JSON; allowed: a JSON object {shape}")
    if not isinstance(body, dict):
        return error(400, f"body: expected a JSON object {shape}")
    return body


#: The largest ``page_size`` the list endpoints take.
MAX_PAGE_SIZE: Final = 100


def paging(body: Mapping[str, Any], default_size: int = 20) -> tuple[int, int] | EmulatedResponse:
    """``(page, page_size)`` of a list request (pages count from 1), or its 400."""
    page, size = body.get("page", 1), body.get("page_size", default_size)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        return error(400, f"page: {page!r:.40}; allowed: an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
        return error(400, f"page_size: {size!r:.40}; allowed: an integer in 1 ~ {MAX_PAGE_SIZE}")
    return page, size


def time_field(body: Mapping[str, Any], name: str) -> float | EmulatedResponse | None:
    """Unix seconds of the ISO 8601 time in ``body[name]`` (``None`` if absent), or a 400."""
    value = body.get(name)
    if value is None or value == "":
        return None
    wall = parse_iso(value) if isinstance(value, str) else None
    if wall is None:
        return error(
            400,
            f"{name}: {value!r:.60} is not a time; allowed: ISO 8601, e.g. 2025-01-31T12:00:00Z",
        )
    return wall
