"""The two-step upload flow: a ticket from ``POST /api/v3/media/uploads``, then a ``PUT``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wavespeed_async.emulator import Emulator

from .helpers import manual

pytestmark = pytest.mark.anyio

PAYLOAD = b"\x89PNG fake bytes" * 100


async def _ticket(s: aiohttp.ClientSession, emu: Emulator, body: Any) -> tuple[int, Any]:
    async with s.post(f"{emu.base_url}/api/v3/media/uploads", json=body) as r:
        return r.status, await r.json()


async def _put(url: str, data: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.put(url, data=data, headers=headers, skip_auto_headers=("Content-Type",)) as r,
    ):
        return r.status


async def _get(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


async def test_ticket_then_put_serves_the_bytes(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        body = {"filename": "my photo.png", "size": len(PAYLOAD), "content_type": "image/png"}
        status, env = await _ticket(session, emu, body)
        assert status == 200
        assert env["code"] == 200
        data = env["data"]
        assert data["download_url"].startswith(f"{emu.base_url}/media/uploads/")
        assert data["download_url"].endswith("/my_photo.png")
        upload = data["upload"]
        assert upload["method"] == "PUT"
        assert upload["headers"] == {"Content-Type": "image/png"}
        # Nothing is served before the bytes arrive.
        assert (await _get(data["download_url"]))[0] == 404
        assert await _put(upload["url"], PAYLOAD, upload["headers"]) == 200
        assert await _get(data["download_url"]) == (200, PAYLOAD, "image/png")
        # The ticket is used once.
        assert await _put(upload["url"], PAYLOAD, upload["headers"]) == 403
        stats = emu.stats()
        assert stats.uploads == 1
        assert stats.media_requests_with_auth == 0


async def test_put_must_match_the_ticket(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        body = {"filename": "a.png", "size": len(PAYLOAD), "content_type": "image/png"}
        _, env = await _ticket(session, emu, body)
        url = env["data"]["upload"]["url"]
        ok = {"Content-Type": "image/png"}
        assert await _put(url, PAYLOAD, {"Content-Type": "image/jpeg"}) == 403
        assert await _put(url.split("?")[0] + "?signature=forged", PAYLOAD, ok) == 403
        assert await _put(url, PAYLOAD[:-1], ok) == 400
        assert await _put(url, PAYLOAD + b"!", ok) == 400

        async def chunked() -> AsyncIterator[bytes]:
            yield PAYLOAD

        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.put(url, data=chunked(), headers=ok) as r,
        ):
            assert r.status == 411
        assert emu.stats().uploads == 0
        assert await _put(url, PAYLOAD, ok) == 200


async def test_put_with_the_api_key_is_counted(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        _, env = await _ticket(session, emu, {"filename": "a.bin", "size": 3})
        upload = env["data"]["upload"]
        assert upload["headers"] == {"Content-Type": "application/octet-stream"}
        async with session.put(upload["url"], data=b"abc", headers=upload["headers"]) as r:
            assert r.status == 200
        assert emu.stats().media_requests_with_auth == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"size": 3}, 400, "filename"),
        ({"filename": "a.png"}, 400, "size"),
        ({"filename": "a.png", "size": -1}, 400, "size"),
        ({"filename": "a.png", "size": True}, 400, "size"),
        ({"filename": "a.png", "size": 2000}, 413, "size"),
        ([1, 2], 400, "body"),
    ],
)
async def test_bad_tickets_are_refused(
    session: aiohttp.ClientSession, body: Any, status: int, field: str
) -> None:
    emu, _ = manual(max_upload_bytes=1000)
    async with emu:
        got, env = await _ticket(session, emu, body)
        assert got == status
        assert env["message"].startswith(f"{field}:")


async def test_ticket_needs_the_api_key() -> None:
    emu, _ = manual()
    async with emu, aiohttp.ClientSession() as anonymous:
        body = {"filename": "a.png", "size": 3}
        async with anonymous.post(f"{emu.base_url}/api/v3/media/uploads", json=body) as r:
            assert r.status == 401
