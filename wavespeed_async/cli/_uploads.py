"""Uploading a job's local input files, each file once per batch however many jobs use it."""

from __future__ import annotations

from typing import Any

import anyio

from wavespeed_async._core.errors import WaveSpeedError
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._jobs import Job, LocalFile, is_url

__all__ = ["Uploads"]


class Uploads:
    """The uploads of one batch: a file's URL (or its upload error) is remembered."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._uploaded: dict[LocalFile, str] = {}
        self._errors: dict[LocalFile, WaveSpeedError] = {}
        self._uploading: dict[LocalFile, anyio.Event] = {}

    async def request_body(self, job: Job) -> dict[str, Any]:
        """The job's request body, local files replaced by their URLs.

        Raises:
            WaveSpeedError: An upload failed.
        """
        body = dict(job.inputs)
        for key, paths in job.local_media.items():
            remaining = iter(paths)
            value = job.inputs[key]
            values = value if isinstance(value, list) else [value]
            urls = [v if is_url(v) else await self.upload(key, next(remaining)) for v in values]
            body[key] = urls if isinstance(value, list) else urls[0]
        return body

    async def upload(self, key: str, path: LocalFile) -> str:
        """The URL of ``path``, uploaded by the first caller; the others wait for it.

        The bytes are read (in a worker thread) through the same open file whose identity
        is checked against the one found when the jobs file was read.
        """
        while True:
            if path in self._uploaded:
                return self._uploaded[path]
            if path in self._errors:
                raise self._errors[path]
            pending = self._uploading.get(path)
            if pending is None:
                break
            await pending.wait()
        done = self._uploading[path] = anyio.Event()
        try:
            data = await anyio.to_thread.run_sync(path.read, key)
            url = await self._client.upload(data, filename=path.path.name)
        except WaveSpeedError as exc:
            self._errors[path] = exc
            raise
        finally:
            done.set()
            del self._uploading[path]
        self._uploaded[path] = url
        return url
