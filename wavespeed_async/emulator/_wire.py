"""HTTP plumbing shared by the handlers: JSON envelopes, error answers, auth, resets."""

from __future__ import annotations

import contextlib
import hmac
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from aiohttp import web

__all__ = [
    "Handler",
    "abort",
    "authorized",
    "base_of",
    "encode",
    "envelope",
    "error",
    "iso",
    "json_response",
    "require_auth",
    "shutting_down",
    "unauthorized",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

encode: Final = msgspec.json.encode


def iso(wall: float) -> str:
    """A wall-clock time as the API writes it: RFC 3339 with nanoseconds, in UTC."""
    ns = int(wall * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=encode(body), content_type="application/json", headers=headers
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error envelope whose ``code`` is the HTTP status."""
    return json_response(status, {"code": status, "message": message, "data": None}, headers)


def shutting_down() -> web.Response:
    """The answer to a request held (stall, sync wait) when the emulator closes."""
    return error(503, "emulator shutting down")


def abort(request: web.Request) -> web.Response:
    """Reset the TCP connection (RST, no answer); the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)


def base_of(request: web.Request) -> str:
    """``scheme://host`` as the client addressed us: the base of the URLs we hand out."""
    return f"{request.scheme}://{request.host}"


def authorized(request: web.Request, api_key: str | None) -> bool:
    """A non-empty Bearer key (``api_key`` itself unless that is ``None``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return False
    return api_key is None or hmac.compare_digest(key.encode(), api_key.encode())


def unauthorized() -> web.Response:
    return error(401, "Unauthorized: missing or invalid API key")


def require_auth(handler: Handler, api_key: str | None) -> Handler:
    """``handler`` behind the API-key check (401 without a valid key)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not authorized(request, api_key):
            return unauthorized()
        return await handler(request)

    return guarded
