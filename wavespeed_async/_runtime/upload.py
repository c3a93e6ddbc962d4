"""Uploading media: the two-step ticket flow, with the multipart endpoint as a fallback.

The current API (and the official SDK) upload in two steps:

1. ``POST /api/v3/media/uploads`` with ``{filename, size, content_type}`` (with the API key)
   answers ``data: {download_url, upload: {method: "PUT", url, headers}}``;
2. the bytes are ``PUT`` to ``upload.url`` with exactly ``upload.headers``, from a session
   without credentials (:func:`wavespeed_async._http.upload.put`).

When the ticket endpoint answers 404 (an older deployment), the documented multipart
``POST /api/v3/media/upload/binary`` is used instead.
"""

from __future__ import annotations

import logging
import random
from typing import Final

import msgspec

from wavespeed_async._core.errors import DecodeError, NotFoundError
from wavespeed_async._core.models import ticket_decoder, upload_decoder
from wavespeed_async._core.settings import RetryConfig, Timeouts
from wavespeed_async._http.media import FileInput, MediaRoute, guess_type
from wavespeed_async._http.upload import Source, multipart, put
from wavespeed_async._runtime.api import Api

__all__ = ["upload"]

log = logging.getLogger("wavespeed_async")

TICKET_PATH: Final = "/api/v3/media/uploads"
BINARY_PATH: Final = "/api/v3/media/upload/binary"


async def upload(
    api: Api,
    file: FileInput,
    *,
    filename: str | None,
    content_type: str | None,
    retry: RetryConfig,
    timeouts: Timeouts,
    rng: random.Random,
    allow_private: bool,
    proxy: str | None = None,
    trust_env: bool = False,
    route: MediaRoute | None = None,
) -> str:
    """Upload ``file`` and return its download URL (see the module docstring).

    Raises:
        ValidationError: the file cannot be read.
        BadRequestError: the server refused the upload (413: too large).
        APIStatusError: the storage host refused the bytes.
        TransportError: the storage host could not be reached (after retries).
        OutputRefusedError: the ticket's storage URL is on an internal address.
    """
    source = await Source.of(file)
    name = filename or source.name
    ctype = content_type or guess_type(name)
    request = {"filename": name, "size": source.size, "content_type": ctype}
    try:
        # A ticket creates no task: asking twice costs nothing, so it is retried as a GET.
        env = await api.call(
            "POST", TICKET_PATH, ticket_decoder, json_body=msgspec.json.encode(request)
        )
    except NotFoundError:
        log.info("no %s on this server: uploading through %s", TICKET_PATH, BINARY_PATH)
        url = await _upload_binary(api, source, name, ctype)
    else:
        if env.data is None:
            raise DecodeError("the upload ticket answer has no data")
        await put(
            env.data.upload,
            source,
            retry=retry,
            timeouts=timeouts,
            rng=rng,
            allow_private=allow_private,
            proxy=proxy,
            trust_env=trust_env,
            route=route,
        )
        url = env.data.download_url
    log.info("uploaded %s (%d bytes)", name, source.size)
    return url


async def _upload_binary(api: Api, source: Source, name: str, ctype: str) -> str:
    body, form_type = await multipart(
        await source.read(), field="file", filename=name, content_type=ctype
    )
    env = await api.call("POST", BINARY_PATH, upload_decoder, body=body, content_type=form_type)
    if env.data is None:
        raise DecodeError("the upload answer has no data")
    return env.data.download_url
