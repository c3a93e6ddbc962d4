"""Media: reading files to upload, and saving outputs to disk.

Outputs are fetched through a connection pool of their own that carries no credentials, so
the API key never reaches an output host (CDN URLs are public). Files are written
atomically: a partial download never appears under its final name.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Final, Union
from urllib.parse import urlsplit

import aiohttp
import anyio
import msgspec

from wavespeed_async import _policy
from wavespeed_async._config import RetryConfig, Timeouts
from wavespeed_async._errors import DecodeError, TransportError, ValidationError
from wavespeed_async._models import Prediction
from wavespeed_async._policy import FailureKind

__all__ = ["Downloader", "FileInput", "guess_type", "read_file_input"]

FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

_CHUNK: Final = 1 << 20
_EXT_BY_TYPE: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
}


def sniff_ext(data: bytes) -> str:
    """A file extension from an image's first bytes (``.bin`` when unknown)."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return ".bin"


def guess_type(name: str) -> str:
    """A content type from a file name."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


async def read_file_input(file: FileInput) -> tuple[bytes, str]:
    """Read a path, bytes or a binary file object off the event loop; return (data, name)."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        return bytes(file), "upload.bin"
    if isinstance(file, (str, os.PathLike)):
        p = anyio.Path(os.fspath(file))
        try:
            return await p.read_bytes(), p.name
        except OSError as exc:
            raise ValidationError("file", f"file: cannot read {os.fspath(file)!r}: {exc}") from None
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
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
    try:
        async with await anyio.open_file(tmp, "wb") as f:
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
    ) -> None:
        self._timeouts = timeouts
        self._retry = retry
        self._rng = rng
        # Its own pool and no default headers: the API key never reaches output hosts.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            headers={"User-Agent": user_agent},
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def save(
        self, prediction: Prediction, directory: str | os.PathLike[str], stem: str | None
    ) -> list[Path]:
        """Save every output as ``{stem}_{n}{ext}`` (``stem`` defaults to the task id)."""
        folder = anyio.Path(os.fspath(directory))
        await folder.mkdir(parents=True, exist_ok=True)
        base = stem or prediction.id
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
                paths.append(await write_atomic(folder / (name + sniff_ext(raw)), [raw]))
            else:
                raw = msgspec.json.encode(output)
                paths.append(await write_atomic(folder / (name + ".json"), [raw]))
        return paths

    async def _fetch(self, url: str, folder: anyio.Path, name: str, task_id: str) -> Path:
        timeout = aiohttp.ClientTimeout(
            sock_connect=self._timeouts.connect_s, sock_read=self._timeouts.request_s
        )
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            try:
                async with self._session.get(url, timeout=timeout) as resp:
                    status = resp.status
                    if status == 200:
                        ext = _EXT_BY_TYPE.get(resp.content_type) or (
                            Path(urlsplit(url).path).suffix[:8] or ".bin"
                        )
                        return await write_atomic(
                            folder / (name + ext), resp.content.iter_chunked(_CHUNK)
                        )
                    kind = FailureKind.STATUS
            except aiohttp.ClientConnectorError:
                kind = FailureKind.CONNECT
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                kind = FailureKind.TIMEOUT
            except aiohttp.ClientError:
                kind = FailureKind.RESET
            decision = _policy.decide_get_retry(
                kind,
                status=status,
                retry_after_s=None,
                attempt=attempt,
                config=self._retry,
                rng=self._rng,
                time_left_s=None,
            )
            if not decision.retry:
                where = urlsplit(url)
                what = f"HTTP {status}" if status else kind.name.lower()
                raise TransportError(
                    f"cannot download output {where.netloc}{where.path}: {what}",
                    method="GET",
                    url=f"{where.scheme}://{where.netloc}{where.path}",
                    task_id=task_id,
                )
            await anyio.sleep(decision.delay_s)
