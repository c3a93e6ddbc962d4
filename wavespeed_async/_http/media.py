"""Media: reading files to upload, and saving outputs to disk.

Outputs are fetched through a connection pool of their own that carries no credentials, so
the API key never reaches an output host (CDN URLs are public). Files are written
atomically: a partial download never appears under its final name, and a failed one
leaves nothing behind.

An output URL is the server's word, so it is not trusted: every address the pool connects
to (after DNS, and after each redirect) is checked, and loopback, private, link-local and
other non-global addresses are refused unless allowed; each file has a size cap and a
total deadline; its name is built from a checked id and an extension the client picks from
a short allow-list (by magic bytes, else the content type, else ``.bin``), never from the
URL; and the final path is proved to stay inside its folder.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import mimetypes
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Final, Protocol, TypeVar, Union
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio
import msgspec

from wavespeed_async._core import policy as _policy
from wavespeed_async._core.errors import (
    ConnectError,
    DecodeError,
    OutputRefusedError,
    TransportError,
    ValidationError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.policy import FailureKind
from wavespeed_async._core.settings import RetryConfig, Timeouts
from wavespeed_async._core.text import printable
from wavespeed_async._http.base import HTTPRequest, HTTPTransport, RequestTimeout

__all__ = [
    "INTERNAL_REFUSED",
    "TOO_MANY_OPEN_FILES",
    "Downloader",
    "FileInput",
    "HostStatus",
    "InternalAddress",
    "guess_type",
    "inside",
    "is_private_host",
    "public_socket",
    "read_file_input",
    "shown_url",
    "too_many_open_files",
    "with_get_retries",
]

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

_T = TypeVar("_T")
_CHUNK: Final = 1 << 20
_MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: The only extensions a saved output can get (a content type outside it gives ``.bin``).
_EXT_BY_TYPE: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
}


#: Leading bytes of the image formats we accept (WebP is checked apart: RIFF....WEBP).
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
_EXT_BY_KIND: Final = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}


def image_kind(head: bytes) -> str | None:
    """The image format from a file's first 12 bytes (png, jpeg, webp, gif), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def sniff_ext(data: bytes) -> str:
    """A file extension from an image's first bytes (``.bin`` when unknown)."""
    kind = image_kind(data)
    return _EXT_BY_KIND[kind] if kind else ".bin"


def _is_internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, unspecified, reserved, shared or multicast."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return not ip.is_global or ip.is_multicast


def is_private_host(host: str) -> bool:
    """Whether ``host`` (a URL's host) is ``localhost`` or a non-global IP literal."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _is_internal(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return False


#: Why a media URL on an internal address is not used, and how to allow it.
INTERNAL_REFUSED: Final = "internal address refused (allow with Client(allow_private_media=True))"


def shown_url(url: str) -> str:
    """A media URL as an error shows it: printable, at most 200 characters, nothing secret.

    Without its query string (which may hold a signature) or the credentials of its
    ``user:password@``.
    """
    where = urlsplit(url)
    _credentials, at, host = where.netloc.rpartition("@")
    netloc = f"***@{host}" if at else host
    return printable(f"{where.scheme}://{netloc}{where.path}", limit=200)


class MediaRoute(HTTPTransport, Protocol):
    """A transport that also serves some media URLs, which are fetched through it.

    Such as an in-process emulator's outputs and upload targets; they skip the media pool.
    """

    def owns(self, url: str) -> bool:
        """Whether ``url`` is served by this transport."""
        ...


def media_route(transport: object) -> MediaRoute | None:
    """``transport`` if it serves media URLs too (it has ``owns(url)``), else ``None``."""
    return transport if callable(getattr(transport, "owns", None)) else None  # type: ignore[return-value]


class InternalAddress(Exception):
    """Raised inside the connector when it is about to connect to a refused address."""


def public_socket(addr_info: Any) -> socket.socket:
    """aiohttp's socket factory for media hosts: refuses non-global addresses.

    Media hosts are those of downloads and upload PUTs.

    Called with the address actually connected to, after DNS and for every redirect hop,
    so neither a hostname resolving to an internal address nor DNS rebinding gets past it.
    """
    family, type_, proto, _, sockaddr = addr_info
    if _is_internal(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])):
        raise InternalAddress(str(sockaddr[0]))
    return socket.socket(family, type_, proto)


def media_connector(
    *, allow_private: bool, proxy: str | None, trust_env: bool, limit: int = 100
) -> aiohttp.TCPConnector:
    """The connector of a media session (downloads, upload PUTs).

    Without a proxy, every connection is checked by :func:`public_socket` as it is made.
    Through a proxy the connection goes to the proxy (which may well be internal), so
    each URL is checked by :func:`check_public` before it is requested instead.
    """
    proxied = proxy is not None or trust_env
    factory = None if allow_private or proxied else public_socket
    return aiohttp.TCPConnector(limit=limit, socket_factory=factory)


async def check_public(url: str) -> None:
    """Raise :class:`InternalAddress` if ``url``'s host resolves to a non-global address.

    For requests sent through a proxy, which resolves the host itself: checked here
    first, with the same rule as :func:`public_socket`.
    """
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return  # the proxy will fail to resolve it too: an ordinary error follows
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if _is_internal(ipaddress.ip_address(address)):
            raise InternalAddress(address)


async def inside(folder: anyio.Path, name: str, *, field: str = "stem") -> anyio.Path:
    """``folder / name``, proved to stay inside ``folder`` (after resolving symlinks).

    Raises:
        ValidationError: ``name`` is not a plain file name, or resolves outside.
    """
    clean = printable(name, limit=200)
    if clean != name or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValidationError(
            field,
            f"{field}: {clean!r} is not allowed; allowed: a plain file name without "
            "separators or control characters, up to 200 characters",
        )
    base = await folder.resolve()
    path = await (base / name).resolve()
    if path.parent != base:
        raise ValidationError(field, f"{field}: {clean!r} would be written outside {base}")
    return path


def guess_type(name: str) -> str:
    """A content type from a file name."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


async def read_file_input(file: FileInput) -> tuple[bytes, str]:
    """Read bytes or a binary file object (off the event loop); return (data, name).

    A path is not read here: an upload streams it from disk (``_upload._Source``).
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        return bytes(file), "upload.bin"
    read = getattr(file, "read", None)
    if read is None:
        raise ValidationError(
            "file",
            f"file: {type(file).__name__} is not allowed; allowed: a path, bytes or a "
            "binary file object",
        )
    data = await anyio.to_thread.run_sync(read)
    if not isinstance(data, bytes):
        raise ValidationError("file", "file: the file object must be opened in binary mode")
    return data, Path(str(getattr(file, "name", "upload.bin"))).name


async def write_atomic(final: anyio.Path, chunks: list[bytes] | AsyncIterator[bytes]) -> Path:
    """Write chunks (a list, or an async iterator of bytes) to ``final`` atomically."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(8)}.part")
    # A fresh file, never one (or a link) already there: a planted link cannot redirect it.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = await anyio.to_thread.run_sync(os.open, tmp, flags, 0o644)
    try:
        async with await anyio.open_file(fd, "wb") as f:
            if isinstance(chunks, list):
                for chunk in chunks:
                    await f.write(chunk)
            else:
                # Gather network chunks into large writes: each write is a thread hop.
                buf = bytearray()
                async for chunk in chunks:
                    buf += chunk
                    if len(buf) >= _CHUNK:
                        await f.write(bytes(buf))
                        buf.clear()
                if buf:
                    await f.write(bytes(buf))
        await tmp.replace(final)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await tmp.unlink(missing_ok=True)
        raise
    return Path(final)


class HostStatus(Exception):
    """A host other than the API answered an unusable status (retried per the GET policy)."""

    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.text = text


#: How a request that could not open a socket for want of file descriptors is described.
TOO_MANY_OPEN_FILES: Final = (
    "too many open files: the process ran out of file descriptors; raise its limit "
    "(ulimit -n) or run fewer downloads at once"
)


def too_many_open_files(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is EMFILE or ENFILE."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.EMFILE, errno.ENFILE):
            return True
        inner = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(inner, OSError) and inner.errno in (errno.EMFILE, errno.ENFILE):
            return True
        current = current.__cause__ or current.__context__
    return False


async def with_get_retries(
    once: Callable[[], Awaitable[_T]],
    *,
    retry: RetryConfig,
    rng: random.Random,
    give_up: Callable[[FailureKind, int | None, str], Exception],
) -> _T:
    """Call ``once`` until it succeeds, retrying per the GET policy.

    A connect failure, a reset, a timeout or a retryable :class:`HostStatus` is retried;
    ``give_up(kind, status, text)`` is raised when the policy says stop, from the last
    failure. For requests to storage and output hosts, which carry no credentials and go
    through a pool of their own.

    ``text`` is the host's answer for a status, and :data:`TOO_MANY_OPEN_FILES` when a
    connection could not be opened for want of file descriptors (a connect failure that
    is no fault of the host's).
    """
    attempt = 0
    while True:
        attempt += 1
        status: int | None = None
        text = ""
        last: BaseException
        try:
            return await once()
        except HostStatus as exc:
            status, text, last = exc.status, exc.text, exc
            kind = FailureKind.STATUS
        except (aiohttp.ClientConnectorError, ConnectError) as exc:
            kind, last = FailureKind.CONNECT, exc
            if too_many_open_files(exc):
                text = TOO_MANY_OPEN_FILES
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            kind, last = FailureKind.TIMEOUT, exc
        except aiohttp.ClientError as exc:
            kind, last = FailureKind.RESET, exc
        except TransportError as exc:  # from a transport that serves media (see MediaRoute)
            kind = FailureKind.TIMEOUT if exc.timed_out else FailureKind.RESET
            last = exc
        decision = _policy.decide_get_retry(
            kind,
            status=status,
            retry_after_s=None,
            attempt=attempt,
            config=retry,
            rng=rng,
            time_left_s=None,
        )
        if not decision.retry:
            raise give_up(kind, status, text) from last
        await anyio.sleep(decision.delay_s)


class Downloader:
    """Saves a task's outputs; owns a credential-free connection pool."""

    def __init__(
        self,
        *,
        timeouts: Timeouts,
        retry: RetryConfig,
        rng: random.Random,
        max_connections: int,
        user_agent: str,
        max_bytes: int,
        max_outputs: int,
        allow_private: bool,
        proxy: str | None = None,
        trust_env: bool = False,
        route: MediaRoute | None = None,
    ) -> None:
        self._timeouts = timeouts
        self._route = route
        self._retry = retry
        self._rng = rng
        self._max_bytes = max_bytes
        self._max_outputs = max_outputs
        self._allow_private = allow_private
        # Its own pool and no default headers: the API key never reaches output hosts.
        self._check_resolved = not allow_private and (proxy is not None or trust_env)
        self._session = aiohttp.ClientSession(
            connector=media_connector(
                allow_private=allow_private, proxy=proxy, trust_env=trust_env, limit=max_connections
            ),
            headers={"User-Agent": user_agent},
            cookie_jar=aiohttp.DummyCookieJar(),  # nothing an output host sets is kept
            proxy=proxy,
            trust_env=trust_env,
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def save(
        self, prediction: Prediction, directory: str | os.PathLike[str], stem: str | None
    ) -> list[Path]:
        """Save every output as ``{stem}_{n}{ext}`` (``stem`` defaults to the task id)."""
        count = len(prediction.outputs)
        if count > self._max_outputs:
            raise OutputRefusedError(
                f"task has {count} outputs, more than {self._max_outputs} "
                "(SizeLimits.max_outputs); none was fetched",
                task_id=prediction.id,
            )
        folder = anyio.Path(os.fspath(directory))
        await folder.mkdir(parents=True, exist_ok=True)
        base = stem or prediction.id
        await inside(folder, base, field="stem" if stem else "prediction.id")
        paths: list[Path] = []
        for n, output in enumerate(prediction.outputs):
            name = f"{base}_{n}"
            if isinstance(output, str) and output.startswith(("http://", "https://")):
                paths.append(await self._fetch(output, folder, name, prediction.id))
            elif isinstance(output, str):
                try:
                    raw = base64.b64decode(output, validate=True)
                except ValueError:
                    raise DecodeError(
                        f"output {n} is neither a URL nor base64", task_id=prediction.id
                    ) from None
                final = await inside(folder, name + sniff_ext(raw))
                paths.append(await write_atomic(final, [raw]))
            else:
                raw = msgspec.json.encode(output)
                paths.append(await write_atomic(await inside(folder, name + ".json"), [raw]))
        return paths

    def _refused(self, url: str, why: str, task_id: str) -> OutputRefusedError:
        shown = shown_url(url)
        return OutputRefusedError(f"output {shown}: {why}", url=shown, task_id=task_id)

    def _check_url(self, url: str, task_id: str) -> None:
        """Refuse a URL that is not http(s), or names an internal address literally."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._refused(url, "not an http(s) URL", task_id)
        if not self._allow_private and is_private_host(parts.hostname):
            raise self._refused(url, INTERNAL_REFUSED, task_id)

    async def _fetch(self, url: str, folder: anyio.Path, name: str, task_id: str) -> Path:
        timeout = aiohttp.ClientTimeout(
            total=self._timeouts.download_s,
            sock_connect=self._timeouts.connect_s,
            sock_read=self._timeouts.request_s,
        )

        def give_up(kind: FailureKind, status: int | None, text: str) -> Exception:
            what = f"HTTP {status}" if status else text or kind.name.lower()
            shown = shown_url(url)
            return TransportError(
                f"cannot download output {shown}: {what}",
                method="GET",
                url=shown,
                task_id=task_id,
            )

        route = self._route
        once = (
            (lambda: self._fetch_routed(route, url, folder, name, task_id))
            if route is not None and route.owns(url)
            else (lambda: self._fetch_once(url, folder, name, task_id, timeout))
        )
        try:
            return await with_get_retries(
                once,
                retry=self._retry,
                rng=self._rng,
                give_up=give_up,
            )
        except InternalAddress as exc:
            raise self._refused(
                url,
                f"resolves to internal address {exc} (allow with Client(allow_private_media=True))",
                task_id,
            ) from None

    async def _fetch_routed(
        self, route: MediaRoute, url: str, folder: anyio.Path, name: str, task_id: str
    ) -> Path:
        """One download through the Client's transport (an in-process emulator's output)."""
        request = HTTPRequest(
            "GET",
            url,
            headers={},  # never the API key
            timeout=RequestTimeout(
                connect_s=self._timeouts.connect_s, total_s=self._timeouts.download_s
            ),
        )
        resp = await route.send(request, max_bytes=self._max_bytes)
        if resp.status != 200:
            raise HostStatus(resp.status)
        if resp.body is None:
            raise self._too_large(url, task_id)
        ext = sniff_ext(resp.body)
        if ext == ".bin":
            ctype = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
            ext = _EXT_BY_TYPE.get(ctype, ".bin")
        return await write_atomic(await inside(folder, name + ext), [resp.body])

    async def _fetch_once(
        self,
        url: str,
        folder: anyio.Path,
        name: str,
        task_id: str,
        timeout: aiohttp.ClientTimeout,
    ) -> Path:
        """One download, following up to five redirects, each hop checked."""
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_url(url, task_id)
            if self._check_resolved:
                await check_public(url)
            async with self._session.get(url, timeout=timeout, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    url = urljoin(url, location)
                    continue
                if resp.status != 200:
                    raise HostStatus(resp.status)
                declared = resp.content_length
                if declared is not None and declared > self._max_bytes:
                    raise self._too_large(url, task_id)
                chunks = resp.content.iter_chunked(_CHUNK)
                first = b""
                async for first in chunks:
                    if first:
                        break
                ext = sniff_ext(first)
                if ext == ".bin":
                    ext = _EXT_BY_TYPE.get(resp.content_type, ".bin")
                final = await inside(folder, name + ext)
                return await write_atomic(final, self._capped(first, chunks, url, task_id))
        raise self._refused(url, f"more than {_MAX_REDIRECTS} redirects", task_id)

    def _too_large(self, url: str, task_id: str) -> OutputRefusedError:
        return self._refused(
            url,
            f"larger than {self._max_bytes} bytes (SizeLimits.max_download_bytes)",
            task_id,
        )

    async def _capped(
        self, first: bytes, rest: AsyncIterator[bytes], url: str, task_id: str
    ) -> AsyncIterator[bytes]:
        size = len(first)
        if size > self._max_bytes:
            raise self._too_large(url, task_id)
        yield first
        async for chunk in rest:
            size += len(chunk)
            if size > self._max_bytes:
                raise self._too_large(url, task_id)
            yield chunk
