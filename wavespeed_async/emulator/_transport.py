"""A Client transport that serves an emulator in process: no socket, the same answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from wavespeed_async._core.errors import ConnectError, TransportError
from wavespeed_async._http.base import HTTPRequest, HTTPResponse
from wavespeed_async.emulator._wire import ResetAfterRequest, ResetBeforeRequest

if TYPE_CHECKING:
    from wavespeed_async.emulator._server import Emulator

__all__ = ["EmulatorTransport"]


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
    else:
        with anyio.fail_after(seconds):
            yield


class EmulatorTransport:
    """Sends a Client's requests straight to :meth:`Emulator.handle` (``emu.transport()``).

    Faults come out as a socket would show them: a reset before the request was read is a
    ``ConnectError`` (nothing was sent), a reset after it a ``TransportError`` (the answer
    is lost), a stall ends at the request's deadline. It serves only the emulator's own
    host (give the Client ``base_url=emu.base_url``), also for downloads and upload PUTs to
    the URLs the emulator hands out. Closing it leaves the emulator running.
    """

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self.requests = 0

    def __repr__(self) -> str:
        return f"<EmulatorTransport {self._emulator.base_url} requests={self.requests}>"

    def owns(self, url: str) -> bool:
        """Whether ``url`` is on the emulator (output and upload URLs it handed out)."""
        return urlsplit(url).netloc == urlsplit(self._emulator.base_url).netloc

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        """Serve ``request`` in process; see :class:`~wavespeed_async.HTTPTransport`."""
        url = request.url
        where = url.split("?", 1)[0]
        if not self.owns(url):
            raise ConnectError(
                f"cannot connect to {urlsplit(url).netloc}: this transport serves only the "
                f"emulator at {self._emulator.base_url} (Client(base_url=emu.base_url, ...))",
                method=request.method,
                url=where,
            )
        self.requests += 1
        try:
            with _deadline(request.timeout.total_s):
                answer = await self._emulator.handle(
                    request.method, url, dict(request.headers), request.body or b""
                )
        except ResetBeforeRequest:
            raise ConnectError(
                f"{request.method} {where}: connection reset before it was sent",
                method=request.method,
                url=where,
            ) from None
        except ResetAfterRequest:
            raise TransportError(
                f"{request.method} {where}: connection lost (reset)",
                method=request.method,
                url=where,
            ) from None
        except TimeoutError:
            raise TransportError(
                f"{request.method} {where}: no answer within {request.timeout.total_s} s",
                method=request.method,
                url=where,
                timed_out=True,
            ) from None
        body = answer.body if len(answer.body) <= max_bytes else None
        return HTTPResponse(answer.status, answer.headers, body)

    async def aclose(self) -> None:
        """Nothing to close: the emulator belongs to whoever started it."""
