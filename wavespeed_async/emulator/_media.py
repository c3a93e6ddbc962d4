"""Media: uploads kept in memory and the generated output PNGs.

It also tells whether an input URL that points at the emulator itself resolves.

Two upload flows are served: the documented multipart ``POST /api/v3/media/upload/binary``,
and the two-step flow of the newest official SDK: ``POST /api/v3/media/uploads`` with
``{filename, size, content_type}`` answers a ticket (``download_url`` plus a ``PUT``
instruction), then the bytes are ``PUT`` to the ticket's URL with exactly its headers.

Media requests (downloads and the storage ``PUT``) need no API key, and a client must not
send one: those that do are counted (``media_requests_with_auth``).
"""

from __future__ import annotations

import logging
import random
import re
import secrets
from dataclasses import dataclass
from email.message import Message
from typing import Final
from urllib.parse import unquote, urlsplit

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._png import ImageCache
from wavespeed_async.emulator._predictions import output_bytes
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._tasks import TaskEngine
from wavespeed_async.emulator._wire import (
    EmulatedResponse,
    Request,
    envelope,
    error,
    json_object,
    json_reply,
)

_DEFAULT_TYPE: Final = "application/octet-stream"

__all__ = ["Media"]

logger = logging.getLogger("wavespeed_async.emulator")

_FILENAME_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_LOCAL_HOSTS: Final = ("127.0.0.1", "localhost", "::1")


@dataclass
class _Upload:
    data: bytes
    content_type: str


@dataclass
class _Ticket:
    """An upload announced by ``POST /api/v3/media/uploads``, waiting for its ``PUT``."""

    token: str
    size: int
    content_type: str
    signature: str


def _clean_filename(raw: str) -> str:
    return _FILENAME_RE.sub("_", unquote(raw)).strip("._") or "file"


def _text(status: int, text: str) -> EmulatedResponse:
    """A plain-text answer, as a storage host gives."""
    return EmulatedResponse(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())


def _header(name: str, value: str) -> Message:
    # The stdlib's header parser handles quoting and RFC 2231 parameters.
    msg = Message()
    msg[name] = value
    return msg


def multipart_file(content_type: str, body: bytes) -> tuple[bytes, str, str] | None:
    """``(data, filename, content type)`` of the ``file`` field of a multipart body.

    ``None`` when the body is not multipart/form-data or has no ``file`` field.
    """
    boundary = _header("content-type", content_type).get_param("boundary")
    if not content_type.lower().startswith("multipart/form-data") or not isinstance(boundary, str):
        return None
    delimiter = b"--" + boundary.encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition = _header("content-disposition", headers.get("content-disposition", ""))
        if disposition.get_param("name", header="content-disposition") != "file":
            continue
        filename = disposition.get_filename() or "file"
        data = data[:-2] if data.endswith(b"\r\n") else data
        return data, filename, headers.get("content-type", _DEFAULT_TYPE)
    return None


class Media:
    """The upload endpoints (binary and ticket + ``PUT``) and the ``/media/...`` files."""

    def __init__(
        self,
        config: EmulatorConfig,
        counters: Counters,
        tasks: TaskEngine,
        images: ImageCache,
        rng_ids: random.Random,
    ) -> None:
        self._config = config
        self._counters = counters
        self._tasks = tasks
        self._images = images
        self._rng_ids = rng_ids
        self._uploads: dict[str, _Upload] = {}
        self._tickets: dict[str, _Ticket] = {}

    def reachable(self, url: str, host: str, own_host: str, own_port: int | None) -> bool:
        """Other hosts are assumed reachable; our own ``/media/...`` must exist.

        ``host`` is the Host the submit came to; ``own_host``/``own_port`` what we bound.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return True
        own = parts.netloc == host or (
            parts.hostname in (*_LOCAL_HOSTS, own_host) and port == own_port
        )
        if not own or not parts.path.startswith("/media/"):
            return True
        segments = parts.path.split("/")
        if len(segments) == 5 and segments[2] == "uploads":
            return segments[3] in self._uploads
        if len(segments) == 5 and segments[2] == "outputs":
            return self._tasks.output(segments[3], segments[4]) is not None
        return False

    async def upload(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/media/upload/binary``: keep the multipart ``file`` field."""
        limit = self._config.max_upload_bytes
        too_large = f"file: larger than the {limit} bytes allowed; pass a URL instead"
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            return error(413, too_large)
        content_type = request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return error(400, "body: expected multipart/form-data with a 'file' field")
        found = multipart_file(content_type, await request.read())
        if found is None:
            return error(400, "file: required multipart field is missing")
        data, raw_name, file_type = found
        if len(data) > limit:
            return error(413, too_large)
        filename = _clean_filename(raw_name)
        token = f"{self._rng_ids.getrandbits(64):016x}"
        self._uploads[token] = _Upload(data, file_type)
        self._counters.uploads += 1
        answer = {
            "type": file_type.split("/", 1)[0] or "file",
            "download_url": f"{request.base}/media/uploads/{token}/{filename}",
            "filename": filename,
            "size": len(data),
        }
        return json_reply(200, envelope(answer))

    async def ticket(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/media/uploads``: announce an upload, answer where to ``PUT`` it."""
        body = await json_object(request, "{filename, size, content_type}")
        if isinstance(body, EmulatedResponse):
            return body
        filename, size = body.get("filename"), body.get("size")
        content_type = body.get("content_type") or _DEFAULT_TYPE
        if not isinstance(filename, str) or not filename:
            return error(400, "filename: required, a non-empty string")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return error(400, "size: required, an integer number of bytes >= 0")
        if not isinstance(content_type, str):
            return error(400, "content_type: must be a string")
        limit = self._config.max_upload_bytes
        if size > limit:
            return error(413, f"size: larger than the {limit} bytes allowed; pass a URL instead")
        token = f"{self._rng_ids.getrandbits(64):016x}"
        ticket = _Ticket(token, size, content_type, secrets.token_hex(16))
        self._tickets[token] = ticket
        base = request.base
        data = {
            "download_url": f"{base}/media/uploads/{token}/{_clean_filename(filename)}",
            "upload": {
                "method": "PUT",
                # Like a presigned storage URL: the signature is the only credential.
                "url": f"{base}/media/put/{token}?signature={ticket.signature}",
                "headers": {"Content-Type": content_type},
            },
        }
        return json_reply(200, envelope(data))

    async def put(self, request: Request) -> EmulatedResponse:
        """``PUT /media/put/{token}``: the bytes of an announced upload (storage-like).

        Answers like a storage host: 403 for a wrong signature or content type, 411
        without a Content-Length (a chunked body), 400 when the body's length differs from
        the announced size; a ticket is used once.
        """
        self._count(request)
        ticket = self._tickets.get(request.match["token"])
        if ticket is None or not secrets.compare_digest(
            request.query.get("signature", ""), ticket.signature
        ):
            return _text(403, "signature does not match")
        if request.headers.get("Content-Type", _DEFAULT_TYPE) != ticket.content_type:
            return _text(403, "Content-Type differs from the signed one")
        if request.content_length is None:  # storage hosts refuse chunked uploads
            return _text(411, "Content-Length required")
        if request.content_length > ticket.size:
            return _text(400, "body larger than the announced size")
        data = await request.read()
        if len(data) > ticket.size:
            return _text(400, "body larger than the announced size")
        if len(data) != ticket.size:
            return _text(400, "body shorter than the announced size")
        del self._tickets[ticket.token]
        self._uploads[ticket.token] = _Upload(data, ticket.content_type)
        self._counters.uploads += 1
        return EmulatedResponse(200)

    async def output(self, request: Request) -> EmulatedResponse:
        """``GET /media/outputs/{id}/{name}``: a completed task's PNG (or MP4)."""
        self._count(request)
        found = self._tasks.output(request.match["id"], request.match["name"])
        if found is None:
            return _text(404, "not found")
        task, index = found
        kind = "video/mp4" if task.output == "video" else "image/png"
        return EmulatedResponse(
            200, {"Content-Type": kind}, output_bytes(task, index, self._images)
        )

    async def uploaded(self, request: Request) -> EmulatedResponse:
        """``GET /media/uploads/{token}/{name}``: an uploaded file (any name)."""
        self._count(request)
        upload = self._uploads.get(request.match["token"])
        if upload is None:
            return _text(404, "not found")
        return EmulatedResponse(200, {"Content-Type": upload.content_type}, upload.data)

    def _count(self, request: Request) -> None:
        self._counters.media_requests += 1
        if "Authorization" in request.headers:
            self._counters.media_with_auth += 1
            logger.warning("a media request carried an Authorization header: %s", request.path)
