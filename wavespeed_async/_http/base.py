"""The transport seam: the one small protocol every API request of a Client goes through.

A transport sends one :class:`HTTPRequest` and returns one :class:`HTTPResponse`, or
raises: :class:`~wavespeed_async.ConnectError` when the request provably never reached
the server (refused, DNS, TLS, no connection in time), and
:class:`~wavespeed_async.TransportError` when no usable answer came back after it may
have been received (reset, timeout: set ``timed_out=True``). That distinction is what
lets the Client re-send a submit only when no billed task can exist. Everything else
(retries, decoding, limits, error types for statuses) is the Client's; a transport never
retries and never follows a redirect.

The default is :class:`~wavespeed_async.AiohttpTransport`; ``Emulator(...).transport()``
serves the built-in emulator in process, with no socket. Nothing here imports aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec

__all__ = ["HTTPRequest", "HTTPResponse", "HTTPTransport", "RequestTimeout"]


@dataclass(frozen=True, slots=True)
class RequestTimeout:
    """How long each phase of one request may take, in seconds (``None``: no limit).

    Attributes:
        connect_s: Opening a new connection (DNS, TCP, TLS).
        pool_s: Getting a connection, from the pool or new: a timeout here proves the
            request never left (raise ``ConnectError``). ``None``: counted in ``total_s``.
        total_s: The whole exchange, connecting included, to the last byte of the
            answer. ``None``: the caller keeps the deadline (it cancels the send).
        read_s: The longest silence while reading the answer.
    """

    connect_s: float | None = None
    pool_s: float | None = None
    total_s: float | None = None
    read_s: float | None = None


class HTTPRequest(msgspec.Struct):
    """One request: method, absolute URL, headers, body, and its timeout.

    A request may be sent more than once (a retried GET, the polls of one task): a
    transport may keep its own prepared form of it in :attr:`prepared`.

    Attributes:
        method: ``GET``, ``POST``, ``PUT``, ...
        url: The absolute URL, query included.
        headers: Every header to send, credentials included (the transport adds none).
        body: The body, or ``None``.
        timeout: How long each phase may take.
        prepared: Free for the transport (e.g. a parsed URL); ``None`` until it sets it.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    timeout: RequestTimeout
    body: bytes | None = None
    prepared: Any = None

    def __repr__(self) -> str:  # never the headers: they carry the key
        return f"<HTTPRequest {self.method} {self.url.split('?', 1)[0]}>"


class HTTPResponse(msgspec.Struct):
    """One answer: status, headers and body (``None`` when it passed the size cap).

    Attributes:
        status: The HTTP status.
        headers: The answer's headers (case-insensitive lookups are the transport's job:
            the Client reads ``Retry-After`` and ``Content-Type``).
        body: The whole body, decompressed; ``None`` when it was larger than ``max_bytes``
            (it was not read, and the connection was closed).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes | None

    def __repr__(self) -> str:
        size = "unread" if self.body is None else f"{len(self.body)} bytes"
        return f"<HTTPResponse {self.status} {size}>"


@runtime_checkable
class HTTPTransport(Protocol):
    """What ``Client(transport=...)`` takes."""

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        """Send ``request`` once and return the answer, reading at most ``max_bytes``.

        Raises:
            ConnectError: the request never reached the server.
            TransportError: no usable answer (``timed_out=True`` for a timeout).
        """
        ...

    async def aclose(self) -> None:
        """Close every connection. Idempotent."""
        ...
