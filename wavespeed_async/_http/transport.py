"""The default transport: one aiohttp session with a bounded pool, optionally proxied."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from wavespeed_async._core.errors import ConnectError, TransportError, ValidationError
from wavespeed_async._core.secret import masked, redacted_url
from wavespeed_async._core.text import printable
from wavespeed_async._http.base import HTTPRequest, HTTPResponse, RequestTimeout

__all__ = ["AiohttpTransport", "check_proxy"]

#: Pool size when nobody says otherwise (a Client passes its ``max_connections``).
DEFAULT_MAX_CONNECTIONS: Final = 100


def check_proxy(proxy: str | None) -> str | None:
    """``proxy`` if it is an ``http://`` URL (a ``ValidationError`` naming it if not)."""
    if proxy is None:
        return None
    url = URL(proxy) if isinstance(proxy, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        shown = redacted_url(proxy) if isinstance(proxy, str) else type(proxy).__name__
        raise ValidationError(
            "proxy", f"proxy: {shown!r:.80} is not allowed; allowed: an http(s)://host:port URL"
        )
    return masked(proxy)


async def _read_rest(resp: aiohttp.ClientResponse, first: bytes, cap: int) -> bytes | None:
    """The whole body after its ``first`` chunk, or ``None`` once it passes ``cap`` bytes.

    On ``None`` the connection is closed.

    Counts decompressed bytes, so a small compressed answer cannot inflate past the cap.
    Most answers come whole in their first chunk, and never get here.
    """
    size = len(first)
    if size > cap:
        resp.close()
        return None
    content = resp.content
    chunks = [first]
    while chunk := await content.readany():
        size += len(chunk)
        if size > cap:
            resp.close()
            return None
        chunks.append(chunk)
        if content.at_eof():  # no second read to see the end
            break
    return b"".join(chunks)


class AiohttpTransport:
    """Sends requests over one aiohttp session (created on first use, on the running loop).

    Args:
        max_connections: Open connections at most (the pool size). A Client that builds
            its own transport passes ``FlowLimits.max_connections``.
        proxy: An ``http://[user:password@]host:port`` proxy for every request. Its
            password is never shown in a repr, a log line or an error.
        trust_env: Take proxies from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (and
            credentials from ``~/.netrc``), as ``curl`` and ``requests`` do.
        headers: Headers of every request, kept by the session (a Client that builds its
            transport passes the API's headers, credentials included: such a transport
            sends to the API only).

    Redirects are never followed: the API never redirects, and a followed redirect could
    take a request carrying the key, or a POST, anywhere. Cookies are neither stored nor
    sent (the API keeps no session state in them).
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        proxy: str | None = None,
        trust_env: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ValidationError(
                "max_connections",
                f"max_connections: {max_connections!r}; allowed: an integer >= 1",
            )
        self._proxy = check_proxy(proxy)
        proxy = None  # only the masked copy stays (no traceback's locals show it)
        self.trust_env = bool(trust_env)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._timeouts: dict[RequestTimeout, aiohttp.ClientTimeout] = {}
        #: The last headers mapping sent and its multidict: the API's headers are one
        #: mapping for every request of a Client, converted once.
        self._headers_of: tuple[Mapping[str, str], CIMultiDict[str]] | None = None
        #: Sent with every request as the session's own: a request whose ``headers`` is
        #: this very mapping adds none (the Client passes the API's headers here).
        self._session_headers = headers

    def __repr__(self) -> str:
        proxy = "" if self._proxy is None else f" proxy={redacted_url(self._proxy)}"
        env = " trust_env" if self.trust_env else ""
        state = "closed" if self._closed else ("open" if self._session else "not opened")
        return f"<AiohttpTransport {state} max_connections={self.max_connections}{proxy}{env}>"

    @property
    def proxied(self) -> bool:
        """Whether requests may go through a proxy (given, or from the environment)."""
        return self._proxy is not None or self.trust_env

    def session_options(self) -> dict[str, object]:
        """What another session of this Client (downloads, uploads) shares: the proxy settings."""
        return {"proxy": self._proxy, "trust_env": self.trust_env}

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnectError("the transport is closed")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            headers=self._session_headers,
            proxy=self._proxy,
            trust_env=self.trust_env,
        )
        return self._session

    def _timeout(self, timeout: RequestTimeout) -> aiohttp.ClientTimeout:
        native = self._timeouts.get(timeout)
        if native is None:
            native = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout.total_s,
                connect=timeout.pool_s,
                sock_connect=timeout.connect_s,
                sock_read=timeout.read_s,
            )
        return native

    def _prepare(
        self, request: HTTPRequest
    ) -> tuple[URL, CIMultiDict[str] | None, aiohttp.ClientTimeout]:
        """What aiohttp needs for ``request``, made once per request object.

        A poll's request is sent at every poll of its task. It holds the parsed URL (aiohttp
        parses a str at every request, and its parse cache of 128 misses once more tasks
        than that are polled), the headers (``None`` when they are the session's own), the
        timeout.
        """
        headers: CIMultiDict[str] | None = None
        if request.headers is not self._session_headers:
            last = self._headers_of
            if last is not None and last[0] is request.headers:
                headers = last[1]
            else:
                headers = CIMultiDict(request.headers)
                self._headers_of = (request.headers, headers)
        return URL(request.url, encoded=False), headers, self._timeout(request.timeout)

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        """Send ``request`` once; see :class:`~wavespeed_async.HTTPTransport`."""
        session = self._session or self._open()
        prepared = request.prepared
        if prepared is None:
            prepared = request.prepared = self._prepare(request)
        url, headers, timeout = prepared
        method = request.method
        try:
            async with session.request(
                method,
                url,
                data=request.body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    resp.close()
                    body = None
                else:
                    content = resp.content
                    body = await content.readany()
                    if len(body) > max_bytes or not content.at_eof():
                        body = await _read_rest(resp, body, max_bytes)
                return HTTPResponse(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(
                f"cannot connect to {_origin(url)}: {exc.os_error or exc}",
                method=method,
                url=_shown(url),
            ) from None
        except aiohttp.ConnectionTimeoutError:
            raise ConnectError(
                f"timed out connecting to {_origin(url)}", method=method, url=_shown(url)
            ) from None
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            limit = request.timeout.read_s or request.timeout.total_s
            raise TransportError(
                f"{method} {_shown(url)}: no answer within {limit} s",
                method=method,
                url=_shown(url),
                timed_out=True,
            ) from None
        except aiohttp.ClientError as exc:
            # Reset, server disconnect, broken payload, bad HTTP: the request may have
            # been received, so for a submit the outcome is unknown.
            raise TransportError(
                f"{method} {_shown(url)}: connection lost "
                f"({type(exc).__name__}: {printable(str(exc), limit=300)})",
                method=method,
                url=_shown(url),
            ) from None

    async def aclose(self) -> None:
        """Close the session and its connections. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _origin(url: URL) -> str:
    return str(url.origin()) if url.absolute else str(url)


def _shown(url: URL) -> str:
    """A URL fit for a message: no credentials and no query (which may carry a token)."""
    return redacted_url(str(url.with_query(None)))
