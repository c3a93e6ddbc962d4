"""The Client's calls besides tasks: the account, webhooks' secret, media in and out."""

from __future__ import annotations

import os
import random
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from wavespeed_async._core.errors import DecodeError
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import (
    Prediction,
    any_decoder,
    balance_decoder,
    webhook_secret_decoder,
)
from wavespeed_async._core.settings import FlowLimits, RetryConfig, SizeLimits, Timeouts
from wavespeed_async._http.media import Downloader, FileInput, media_route
from wavespeed_async._http.transport import AiohttpTransport
from wavespeed_async._runtime import upload as _upload

if TYPE_CHECKING:
    from wavespeed_async._runtime.api import Api

__all__ = ["Endpoints"]


class Endpoints:
    """The calls of :class:`~wavespeed_async.Client` that are not about one task's run."""

    _timeouts: Timeouts
    _retry: RetryConfig
    _sizes: SizeLimits
    _limits: FlowLimits
    _rng: random.Random
    _allow_private_media: bool
    _downloader: Downloader | None
    _extra_headers: dict[str, str]

    def _open(self) -> Api:
        raise NotImplementedError

    async def balance(self) -> Decimal:
        """The account balance in USD, exactly (a ``Decimal``)."""
        env = await self._open().call("GET", "/api/v3/balance", balance_decoder)
        if env.data is None:
            raise DecodeError("the balance answer has no data")
        return env.data.balance

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``whsec_...``), for ``verify_webhook``."""
        env = await self._open().call("GET", "/api/v3/webhook/secret", webhook_secret_decoder)
        if env.data is None:
            raise DecodeError("the webhook secret answer has no data")
        return env.data.secret

    async def delete(self, task_ids: list[str]) -> None:
        """Delete tasks and their outputs on the server.

        There is no cancel: a running task is still billed.
        """
        if not task_ids:
            return
        for i, task_id in enumerate(task_ids):
            check_task_id(task_id, f"task_ids[{i}]")
        await self._open().call(
            "POST",
            "/api/v3/predictions/delete",
            any_decoder,
            json_body=msgspec.json.encode({"ids": list(task_ids)}),
        )

    def _media_options(self) -> dict[str, Any]:
        """What the media sessions (downloads, upload PUTs) share with the API's.

        The proxy settings when the Client built its transport, or the transport itself when
        it serves media URLs too (an in-process emulator).
        """
        transport = self._open().transport
        if isinstance(transport, AiohttpTransport):
            return {**transport.session_options(), "route": None}
        return {"proxy": None, "trust_env": False, "route": media_route(transport)}

    async def upload(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Upload media and return its URL, to pass as a model's ``image`` input.

        Uses the API's two-step flow: a ticket from ``POST /api/v3/media/uploads``, then a
        ``PUT`` of the bytes to the storage URL it names, sent without the API key. A path
        is streamed from disk. Servers without the ticket endpoint (404) get the multipart
        ``POST /api/v3/media/upload/binary`` instead.

        Args:
            file: A path, bytes, or a binary file object. Files are read in worker
                threads, never on the event loop.
            filename: The name to store it under (default: the path's name, or
                ``upload.bin``).
            content_type: Default: guessed from the name.

        Raises:
            ValidationError: the file cannot be read.
            BadRequestError: the file is too large for the server (413).
            APIStatusError: the storage host refused the bytes.
            TransportError: the storage host could not be reached (after retries).
            OutputRefusedError: the storage URL is on an internal address (see
                ``allow_private_media``).
        """
        return await _upload.upload(
            self._open(),
            file,
            filename=filename,
            content_type=content_type,
            retry=self._retry,
            timeouts=self._timeouts,
            rng=self._rng,
            allow_private=self._allow_private_media,
            **self._media_options(),
        )

    async def download(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        *,
        stem: str | None = None,
    ) -> list[Path]:
        """Save every output of a completed task into ``directory``; return the paths.

        Files are named ``{stem}_{n}{ext}`` (``stem`` defaults to the task id) and written
        atomically (a partial file never appears under the final name). URL outputs are
        streamed to disk through a separate connection pool that never carries the API
        key; base64 outputs are decoded.

        Raises:
            TransportError: an output could not be fetched (after retries).
            DecodeError: an output is neither a URL nor base64.
        """
        options = self._media_options()
        if self._downloader is None:
            self._downloader = Downloader(
                timeouts=self._timeouts,
                retry=self._retry,
                rng=self._rng,
                max_connections=self._limits.max_connections,
                user_agent=self._extra_headers["User-Agent"],
                max_bytes=self._sizes.max_download_bytes,
                max_outputs=self._sizes.max_outputs,
                allow_private=self._allow_private_media,
                **options,
            )
        return await self._downloader.save(prediction, directory, stem)
