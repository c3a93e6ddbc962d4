"""Media: uploads kept in memory, the generated output PNGs, and whether an input URL
that points at the emulator itself resolves.

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
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp import web

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._png import ImageCache
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._tasks import TaskEngine
from wavespeed_async.emulator._wire import base_of, envelope, error, json_response

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

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v3/media/upload/binary``: keep the multipart ``file`` field."""
        limit = self._config.max_upload_bytes
        too_large = f"file: larger than the {limit} bytes allowed; pass a URL instead"
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            return error(413, too_large)
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            return error(400, "body: expected multipart/form-data with a 'file' field")
        while True:
            part = await reader.next()
            if part is None:
                return error(400, "file: required multipart field is missing")
            if not isinstance(part, aiohttp.BodyPartReader) or part.name != "file":
                continue
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(256 * 1024):
                size += len(chunk)
                if size > limit:
                    return error(413, too_large)
                chunks.append(chunk)
            break
        content_type = part.headers.get("Content-Type", "application/octet-stream")
        filename = _clean_filename(part.filename or "file")
        token = f"{self._rng_ids.getrandbits(64):016x}"
        self._uploads[token] = _Upload(b"".join(chunks), content_type)
        self._counters.uploads += 1
        data = {
            "type": content_type.split("/", 1)[0] or "file",
            "download_url": f"{base_of(request)}/media/uploads/{token}/{filename}",
            "filename": filename,
            "size": size,
        }
        return json_response(200, envelope(data))

    async def ticket(self, request: web.Request) -> web.StreamResponse:
        """``POST /api/v3/media/uploads``: announce an upload, answer where to ``PUT`` it."""
        try:
            body: Any = await request.json()
        except ValueError:
            return error(400, "body: expected a JSON object {filename, size, content_type}")
        if not isinstance(body, dict):
            return error(400, "body: expected a JSON object {filename, size, content_type}")
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
        base = base_of(request)
        data = {
            "download_url": f"{base}/media/uploads/{token}/{_clean_filename(filename)}",
            "upload": {
                "method": "PUT",
                # Like a presigned storage URL: the signature is the only credential.
                "url": f"{base}/media/put/{token}?signature={ticket.signature}",
                "headers": {"Content-Type": content_type},
            },
        }
        return json_response(200, envelope(data))

    async def put(self, request: web.Request) -> web.StreamResponse:
        """``PUT /media/put/{token}``: the bytes of an announced upload (storage-like).

        Answers like a storage host: 403 for a wrong signature or content type, 411
        without a Content-Length (a chunked body), 400 when the body's length differs from
        the announced size; a ticket is used once.
        """
        self._count(request)
        ticket = self._tickets.get(request.match_info["token"])
        if ticket is None or not secrets.compare_digest(
            request.query.get("signature", ""), ticket.signature
        ):
            return web.Response(status=403, text="signature does not match")
        if request.headers.get("Content-Type", _DEFAULT_TYPE) != ticket.content_type:
            return web.Response(status=403, text="Content-Type differs from the signed one")
        if request.content_length is None:  # storage hosts refuse chunked uploads
            return web.Response(status=411, text="Content-Length required")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > ticket.size:
                return web.Response(status=400, text="body larger than the announced size")
            chunks.append(chunk)
        if size != ticket.size:
            return web.Response(status=400, text="body shorter than the announced size")
        del self._tickets[ticket.token]
        self._uploads[ticket.token] = _Upload(b"".join(chunks), ticket.content_type)
        self._counters.uploads += 1
        return web.Response(status=200)

    async def output(self, request: web.Request) -> web.StreamResponse:
        """``GET /media/outputs/{id}/{name}``: a completed task's PNG."""
        self._count(request)
        found = self._tasks.output(request.match_info["id"], request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="not found")
        task, index = found
        png = self._images.get(task.prompt, task.seed, index, task.width, task.height)
        return web.Response(body=png, content_type="image/png")

    async def uploaded(self, request: web.Request) -> web.StreamResponse:
        """``GET /media/uploads/{token}/{name}``: an uploaded file (any name)."""
        self._count(request)
        upload = self._uploads.get(request.match_info["token"])
        if upload is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=upload.data, headers={"Content-Type": upload.content_type})

    def _count(self, request: web.Request) -> None:
        self._counters.media_requests += 1
        if "Authorization" in request.headers:
            self._counters.media_with_auth += 1
            logger.warning("a media request carried an Authorization header: %s", request.path)
