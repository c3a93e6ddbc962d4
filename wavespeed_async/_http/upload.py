"""Uploading media: the two-step ticket flow, with the multipart endpoint as a fallback.

The current API (and the official SDK) upload in two steps:

1. ``POST /api/v3/media/uploads`` with ``{filename, size, content_type}`` (with the API key)
   answers ``data: {download_url, upload: {method: "PUT", url, headers}}``;
2. the bytes are ``PUT`` to ``upload.url`` with exactly ``upload.headers``.

The ``PUT`` goes to a storage host: it is sent from a connection pool of its own that carries
no credentials, so the API key never reaches that host. That host is the server's word, so
the ``PUT`` is held to the same rules as an output download: a total deadline
(``Timeouts.upload_s``), no redirect, and no internal address (after DNS) unless
``allow_private`` (``Client(allow_private_media=...)``). A file given by path is streamed
from disk (read in worker threads), never held in memory whole. When the ticket endpoint
answers 404 (an older deployment), the documented multipart
``POST /api/v3/media/upload/binary`` is used instead.
"""

from __future__ import annotations

import logging
import os
import random
import stat as stat_module
from collections.abc import Callable
from typing import IO, Any, Final
from urllib.parse import urlsplit

import aiohttp
import anyio
import msgspec

from wavespeed_async._core.errors import (
    APIStatusError,
    DecodeError,
    NotFoundError,
    OutputRefusedError,
    ServerError,
    TransportError,
    ValidationError,
)
from wavespeed_async._core.models import upload_decoder
from wavespeed_async._core.policy import FailureKind
from wavespeed_async._core.settings import RetryConfig, Timeouts
from wavespeed_async._core.text import printable
from wavespeed_async._http.media import (
    INTERNAL_REFUSED,
    FileInput,
    HostStatus,
    InternalAddress,
    guess_type,
    is_private_host,
    public_socket,
    read_file_input,
    shown_url,
    with_get_retries,
)
from wavespeed_async._runtime.api import Transport

__all__ = ["UploadTicket", "upload"]

log = logging.getLogger("wavespeed_async")

TICKET_PATH: Final = "/api/v3/media/uploads"
BINARY_PATH: Final = "/api/v3/media/upload/binary"


class UploadInstruction(msgspec.Struct, frozen=True):
    """Where and how to send the bytes: ``{method, url, headers}``."""

    url: str
    method: str = "PUT"
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class UploadTicket(msgspec.Struct, frozen=True):
    """``POST /api/v3/media/uploads`` data."""

    download_url: str
    upload: UploadInstruction


class _TicketEnvelope(msgspec.Struct, frozen=True):
    code: int | str | None = None
    message: str | None = None
    data: UploadTicket | None = None


_ticket_decoder: Final = msgspec.json.Decoder(_TicketEnvelope)
#: How much of a storage host's error body is read (and shown in the error).
_ERROR_BODY_BYTES: Final = 2000


class _Source:
    """The bytes to upload: a file (streamed from disk on each attempt) or bytes in memory."""

    __slots__ = ("data", "name", "path", "size")

    def __init__(self, name: str, size: int, *, path: str = "", data: bytes | None = None):
        self.name = name
        self.size = size
        self.path = path  #: read when ``data`` is None
        self.data = data

    @classmethod
    async def of(cls, file: FileInput) -> _Source:
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


async def upload(
    transport: Transport,
    file: FileInput,
    *,
    filename: str | None,
    content_type: str | None,
    retry: RetryConfig,
    timeouts: Timeouts,
    rng: random.Random,
    allow_private: bool,
) -> str:
    """Upload ``file`` and return its download URL (see the module docstring).

    Raises:
        ValidationError: the file cannot be read.
        BadRequestError: the server refused the upload (413: too large).
        APIStatusError: the storage host refused the bytes.
        TransportError: the storage host could not be reached (after retries).
        OutputRefusedError: the ticket's storage URL is on an internal address.
    """
    source = await _Source.of(file)
    name = filename or source.name
    ctype = content_type or guess_type(name)
    request = {"filename": name, "size": source.size, "content_type": ctype}
    try:
        # A ticket creates no task: asking twice costs nothing, so it is retried as a GET.
        env = await transport.call(
            "POST", TICKET_PATH, _ticket_decoder, json_body=msgspec.json.encode(request)
        )
    except NotFoundError:
        log.info("no %s on this server: uploading through %s", TICKET_PATH, BINARY_PATH)
        url = await _upload_binary(transport, source, name, ctype)
    else:
        if env.data is None:
            raise DecodeError("the upload ticket answer has no data")
        await _put(
            env.data.upload,
            source,
            retry=retry,
            timeouts=timeouts,
            rng=rng,
            allow_private=allow_private,
        )
        url = env.data.download_url
    log.info("uploaded %s (%d bytes)", name, source.size)
    return url


async def _upload_binary(transport: Transport, source: _Source, name: str, ctype: str) -> str:
    data = await source.read()

    def form() -> aiohttp.FormData:
        fd = aiohttp.FormData()
        fd.add_field("file", data, filename=name, content_type=ctype)
        return fd

    env = await transport.call("POST", BINARY_PATH, upload_decoder, form=form)
    if env.data is None:
        raise DecodeError("the upload answer has no data")
    return env.data.download_url


async def _put(
    instruction: UploadInstruction,
    source: _Source,
    *,
    retry: RetryConfig,
    timeouts: Timeouts,
    rng: random.Random,
    allow_private: bool,
) -> None:
    """Send the bytes as the ticket says, from a session that has no credentials."""
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
    connector = aiohttp.TCPConnector(socket_factory=None if allow_private else public_socket)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def once() -> None:
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

        def give_up(kind: FailureKind, status: int | None, text: str) -> Exception:
            return _put_error(status, kind, where, text)

        try:
            await with_get_retries(once, retry=retry, rng=rng, give_up=give_up)
        except InternalAddress as exc:
            raise OutputRefusedError(
                f"upload URL {shown}: resolves to {exc}: {INTERNAL_REFUSED}", url=shown
            ) from None


async def _head(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The first ``limit`` bytes of the body (fewer if it ends first), never the rest: the
    storage host is the ticket's word, not ours, and its body could be endless."""
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
            f"cannot upload to {where}: {kind.name.lower()}", method="PUT", url=where
        )
    cls = ServerError if status >= 500 else APIStatusError
    return cls(f"the storage host refused the upload to {where}", status=status, body=text)
