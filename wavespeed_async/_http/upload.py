"""Sending upload bytes to a storage host, from a session that carries no credentials.

The ticket's ``PUT`` goes to a storage host: it is sent from a connection pool of its own
that carries no credentials, so the API key never reaches that host. That host is the
server's word, so the ``PUT`` is held to the same rules as an output download: a total
deadline (``Timeouts.upload_s``), no redirect, and no internal address (after DNS) unless
``allow_private`` (``Client(allow_private_media=...)``). A file given by path is streamed
from disk (read in worker threads), never held in memory whole.
"""

from __future__ import annotations

import os
import random
import stat as stat_module
from collections.abc import Callable
from typing import IO, Any, Final
from urllib.parse import urlsplit

import aiohttp
import anyio

from wavespeed_async._core.errors import (
    APIStatusError,
    DecodeError,
    OutputRefusedError,
    ServerError,
    TransportError,
    ValidationError,
)
from wavespeed_async._core.models import UploadInstruction
from wavespeed_async._core.policy import FailureKind
from wavespeed_async._core.settings import RetryConfig, Timeouts
from wavespeed_async._core.text import printable
from wavespeed_async._http.base import HTTPRequest, RequestTimeout
from wavespeed_async._http.media import (
    INTERNAL_REFUSED,
    FileInput,
    HostStatus,
    InternalAddress,
    MediaRoute,
    check_public,
    is_private_host,
    media_connector,
    read_file_input,
    shown_url,
    with_get_retries,
)

__all__ = ["Source", "multipart", "put"]

#: How much of a storage host's error body is read (and shown in the error).
_ERROR_BODY_BYTES: Final = 2000


class Source:
    """The bytes to upload: a file (streamed from disk on each attempt) or bytes in memory."""

    __slots__ = ("data", "name", "path", "size")

    def __init__(self, name: str, size: int, *, path: str = "", data: bytes | None = None):
        self.name = name
        self.size = size
        self.path = path  #: read when ``data`` is None
        self.data = data

    @classmethod
    async def of(cls, file: FileInput) -> Source:
        if isinstance(file, (str, os.PathLike)):
            path = os.fspath(file)
            try:
                st = await anyio.Path(path).stat()
            except OSError as exc:
                raise ValidationError("file", f"file: cannot read {path!r}: {exc}") from None
            if not stat_module.S_ISREG(st.st_mode):
                raise ValidationError("file", f"file: {path!r} is not a regular file")
            return cls(os.path.basename(path), st.st_size, path=path)
        data, name = await read_file_input(file)
        return cls(name, len(data), data=data)

    async def read(self) -> bytes:
        """All the bytes (for the multipart endpoint, which cannot stream)."""
        if self.data is not None:
            return self.data
        return await anyio.Path(self.path).read_bytes()

    async def open(self) -> IO[bytes] | bytes:
        """A fresh body for one attempt (a file opened in a worker thread, or the bytes)."""
        if self.data is not None:
            return self.data
        path = self.path
        try:
            return await anyio.to_thread.run_sync(lambda: open(path, "rb"))
        except OSError as exc:
            raise ValidationError("file", f"file: cannot read {path!r}: {exc}") from None


class _Buffer:
    """Collects what a multipart writer writes (aiohttp's writer interface, in memory)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(bytes(chunk))

    async def write_eof(self, chunk: bytes = b"") -> None:
        if chunk:
            self.chunks.append(bytes(chunk))

    async def drain(self) -> None:
        return None


async def multipart(
    data: bytes, *, field: str, filename: str, content_type: str
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file field, and its content type."""
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type=content_type)
    writer = form()
    buffer = _Buffer()
    await writer.write(buffer)  # type: ignore[arg-type]
    return b"".join(buffer.chunks), writer.content_type


async def put(
    instruction: UploadInstruction,
    source: Source,
    *,
    retry: RetryConfig,
    timeouts: Timeouts,
    rng: random.Random,
    allow_private: bool,
    proxy: str | None = None,
    trust_env: bool = False,
    route: MediaRoute | None = None,
) -> None:
    """Send the bytes as the ticket says, from a session that has no credentials.

    Or through ``route``, a transport that serves the storage URL itself.
    """
    parts = urlsplit(instruction.url)
    if (
        instruction.method.upper() != "PUT"
        or parts.scheme not in ("http", "https")
        or not parts.hostname
    ):
        raise DecodeError(
            f"the upload ticket asks for {printable(instruction.method, limit=20)} "
            f"{printable(instruction.url, limit=200)!r}; expected PUT to an http(s) URL"
        )
    shown = shown_url(instruction.url)
    if not allow_private and is_private_host(parts.hostname):
        raise OutputRefusedError(f"upload URL {shown}: {INTERNAL_REFUSED}", url=shown)
    headers = dict(instruction.headers)
    # Exactly the ticket's headers: no Content-Type of our own when it names none.
    skip = () if any(h.lower() == "content-type" for h in headers) else ("Content-Type",)
    timeout = aiohttp.ClientTimeout(
        total=timeouts.upload_s, sock_connect=timeouts.connect_s, sock_read=timeouts.request_s
    )
    where = instruction.url.split("?", 1)[0]

    def give_up(kind: FailureKind, status: int | None, text: str) -> Exception:
        return _put_error(status, kind, where, text)

    if route is not None and route.owns(instruction.url):
        request = HTTPRequest(
            "PUT",
            instruction.url,
            headers=headers,
            body=await source.read(),
            timeout=RequestTimeout(connect_s=timeouts.connect_s, total_s=timeouts.upload_s),
        )

        async def routed() -> None:
            resp = await route.send(request, max_bytes=_ERROR_BODY_BYTES)
            if not 200 <= resp.status < 300:
                text = (resp.body or b"")[:_ERROR_BODY_BYTES].decode(errors="replace")
                raise HostStatus(resp.status, text)

        await with_get_retries(routed, retry=retry, rng=rng, give_up=give_up)
        return
    connector = media_connector(allow_private=allow_private, proxy=proxy, trust_env=trust_env)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), proxy=proxy, trust_env=trust_env
    ) as session:

        async def once() -> None:
            if not allow_private and (proxy is not None or trust_env):
                await check_public(instruction.url)  # the proxy resolves it: check it here
            body = await source.open()
            try:
                async with session.put(
                    instruction.url,
                    data=body,
                    headers=headers,
                    skip_auto_headers=skip,
                    timeout=timeout,
                    # A streamed body cannot be sent twice, and a redirect could lead anywhere.
                    allow_redirects=False,
                ) as resp:
                    if not 200 <= resp.status < 300:
                        head = await _head(resp, _ERROR_BODY_BYTES)
                        raise HostStatus(resp.status, head.decode(errors="replace"))
            finally:
                _close(body)

        try:
            await with_get_retries(once, retry=retry, rng=rng, give_up=give_up)
        except InternalAddress as exc:
            raise OutputRefusedError(
                f"upload URL {shown}: resolves to {exc}: {INTERNAL_REFUSED}", url=shown
            ) from None


async def _head(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The first ``limit`` bytes of the body (fewer if it ends first), never the rest.

    The storage host is the ticket's word, not ours, and its body could be endless.
    """
    head = b""
    while len(head) < limit:
        chunk = await resp.content.read(limit - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _close(body: Any) -> None:
    close: Callable[[], None] | None = getattr(body, "close", None)
    if close is not None:
        close()


def _put_error(status: int | None, kind: FailureKind, where: str, text: str) -> Exception:
    if status is None:
        return TransportError(
            f"cannot upload to {where}: {text or kind.name.lower()}", method="PUT", url=where
        )
    cls = ServerError if status >= 500 else APIStatusError
    return cls(f"the storage host refused the upload to {where}", status=status, body=text)
