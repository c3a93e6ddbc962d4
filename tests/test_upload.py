"""Client.upload: the ticket + PUT flow, streamed from disk, the key never sent to storage."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from tests.conftest import CANARY_KEY, fast_retry
from tests.services import internal_host_name, serve_aiohttp
from wavespeed_async import (
    APIStatusError,
    Client,
    OutputRefusedError,
    Timeouts,
    TransportError,
    ValidationError,
)
from wavespeed_async.emulator import Emulator

pytestmark = pytest.mark.anyio


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as r:
        assert r.status == 200
        return await r.read()


async def test_upload_uses_the_ticket_flow_without_sending_the_key(
    client: Client, emulator: Emulator, tmp_path: Path
) -> None:
    src = tmp_path / "photo.png"
    payload = bytes(range(256)) * 4099  # ~1 MiB: more than one read from disk
    src.write_bytes(payload)
    url = await client.upload(src)
    assert url.startswith(f"{emulator.base_url}/media/uploads/")
    assert url.endswith("/photo.png")
    stats = emulator.stats()
    # The bytes went by PUT to the storage URL (a media request), not by the API.
    assert (stats.uploads, stats.media_requests, stats.media_requests_with_auth) == (1, 1, 0)
    assert await _fetch(url) == payload


async def test_upload_of_bytes_and_file_objects(client: Client, emulator: Emulator) -> None:
    url = await client.upload(b"raw", filename="a.txt")
    assert await _fetch(url) == b"raw"
    url2 = await client.upload(io.BytesIO(b"object"), filename="b.bin")
    assert await _fetch(url2) == b"object"
    assert emulator.stats().media_requests_with_auth == 0


async def test_upload_of_a_missing_file_is_a_validation_error(
    client: Client, emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="file: cannot read"):
        await client.upload(tmp_path / "nope.png")
    with pytest.raises(ValidationError, match="not a regular file"):
        await client.upload(tmp_path)
    assert emulator.stats().requests_total == 0


async def test_upload_larger_than_announced_limit_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    from wavespeed_async.emulator import EmulatorConfig, LatencyProfile

    config = EmulatorConfig(latency=LatencyProfile.fast(), max_upload_bytes=10)
    async with Emulator(config) as emu, Client(CANARY_KEY, base_url=emu.base_url) as c:
        with pytest.raises(APIStatusError) as info:
            await c.upload(b"x" * 11, filename="big.bin")
        assert info.value.status == 413
        assert emu.stats().media_requests == 0


@pytest.fixture
async def binary_only_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server with only the multipart endpoint: the ticket endpoint answers 404."""
    received: list[bytes] = []

    async def binary(request: web.Request) -> web.Response:
        form = await request.post()
        field = form["file"]
        assert isinstance(field, web.FileField)
        received.append(field.file.read())
        data = {"download_url": "http://storage.invalid/x.png", "type": "image"}
        return web.json_response({"code": 200, "message": "success", "data": data})

    app = web.Application()
    app.router.add_post("/api/v3/media/upload/binary", binary)
    async with serve_aiohttp(app) as base_url:
        yield base_url, received


async def test_upload_falls_back_to_the_binary_endpoint_on_404(
    binary_only_server: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    base_url, received = binary_only_server
    src = tmp_path / "a.png"
    src.write_bytes(b"png bytes")
    async with Client(CANARY_KEY, base_url=base_url, retry=fast_retry()) as c:
        assert await c.upload(src) == "http://storage.invalid/x.png"
    assert received == [b"png bytes"]


async def test_storage_refusal_is_an_api_status_error(tmp_path: Path) -> None:
    async def ticket(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        data = {
            "download_url": f"{base}/files/a.png",
            "upload": {"method": "PUT", "url": f"{base}/put", "headers": {}},
        }
        return web.json_response({"code": 200, "message": "success", "data": data})

    seen: list[dict[str, str]] = []

    async def put(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(status=403, text="AccessDenied")

    app = web.Application()
    app.router.add_post("/api/v3/media/uploads", ticket)
    app.router.add_put("/put", put)
    async with (
        serve_aiohttp(app) as base_url,
        Client(CANARY_KEY, base_url=base_url, retry=fast_retry()) as c,
    ):
        with pytest.raises(APIStatusError) as info:
            await c.upload(b"abc", filename="a.png")
    assert info.value.status == 403
    assert "AccessDenied" in info.value.body
    assert CANARY_KEY not in str(info.value)
    # Exactly the ticket's (empty) headers: no Authorization, no Content-Type of our own.
    assert len(seen) == 1
    assert "Authorization" not in seen[0]
    assert "Content-Type" not in seen[0]


async def test_a_storage_refusal_with_a_huge_body_is_read_only_in_part() -> None:
    # The storage host is named by the ticket, so it is the server's word: its error body
    # is read up to what the error shows, never whole into memory.
    flood = 32 * 1024 * 1024
    sent = 0

    async def ticket(request: web.Request) -> web.Response:
        upload = {"method": "PUT", "url": f"http://{request.host}/put", "headers": {}}
        data = {"download_url": f"http://{request.host}/files/a.png", "upload": upload}
        return web.json_response({"code": 200, "message": "success", "data": data})

    async def put(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        await request.read()
        resp = web.StreamResponse(status=403, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while sent < flood:
                await resp.write(b"AccessDenied " * 5000)
                sent += 13 * 5000
        except ConnectionError:
            pass
        return resp

    app = web.Application()
    app.router.add_post("/api/v3/media/uploads", ticket)
    app.router.add_put("/put", put)
    async with (
        serve_aiohttp(app) as base_url,
        Client(CANARY_KEY, base_url=base_url, retry=fast_retry()) as c,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(APIStatusError) as info:
                await c.upload(b"abc", filename="a.png")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.status == 403
    assert info.value.body.startswith("AccessDenied")
    assert len(info.value.body) <= 2000
    assert peak < 8 * 1024 * 1024


def _ticket_app(put_url: str, put: object) -> web.Application:
    """A server whose upload ticket names ``put_url`` (``{host}``, ``{port}``: its own)."""

    async def ticket(request: web.Request) -> web.Response:
        port = request.host.rsplit(":", 1)[1]
        url = put_url.format(host=request.host, port=port)
        upload = {"method": "PUT", "url": url, "headers": {}}
        data = {"download_url": f"http://{request.host}/files/a.png", "upload": upload}
        return web.json_response({"code": 200, "message": "success", "data": data})

    app = web.Application()
    app.router.add_post("/api/v3/media/uploads", ticket)
    app.router.add_put("/put", put)  # type: ignore[arg-type]
    app.router.add_put("/elsewhere", put)  # type: ignore[arg-type]
    return app


@pytest.mark.parametrize(
    "target",
    ["http://{host}/put", "http://169.254.169.254/latest", "http://[::1]/x", "http://10.0.0.1/x"],
)
async def test_an_upload_url_on_an_internal_address_is_refused_unless_allowed(
    target: str,
) -> None:
    # The storage URL is the server's word: a ticket must not make the client send the
    # user's file to a host inside the network (a cloud metadata service, say).
    received: list[bytes] = []

    async def put(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    async with serve_aiohttp(_ticket_app(target, put)) as base_url:
        async with Client(
            CANARY_KEY, base_url=base_url, retry=fast_retry(), allow_private_media=False
        ) as c:
            with pytest.raises(OutputRefusedError) as info:
                await c.upload(b"secret bytes", filename="a.png")
        assert "allow_private_media" in str(info.value)
        assert received == []
        if target.startswith("http://{host}"):  # the opt-in lets a local host through
            async with Client(
                CANARY_KEY, base_url=base_url, retry=fast_retry(), allow_private_media=True
            ) as c:
                await c.upload(b"secret bytes", filename="a.png")
            assert received == [b"secret bytes"]


async def test_an_upload_url_whose_name_resolves_to_an_internal_address_is_refused() -> None:
    name = internal_host_name()
    hits: list[str] = []

    async def put(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=200)

    async with serve_aiohttp(_ticket_app(f"http://{name}:{{port}}/put", put)) as base_url:
        async with Client(
            CANARY_KEY, base_url=base_url, retry=fast_retry(), allow_private_media=False
        ) as c:
            with pytest.raises(OutputRefusedError, match="resolves to"):
                await c.upload(b"x", filename="a.png")
    assert hits == []


async def test_an_upload_is_not_redirected() -> None:
    # A redirect could lead anywhere (an internal host after a public one), and a streamed
    # body cannot be sent twice: a redirect is the storage host's refusal.
    hits: list[str] = []

    async def put(request: web.Request) -> web.Response:
        hits.append(request.path)
        await request.read()
        if request.path == "/put":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.Response(status=200)

    async with (
        serve_aiohttp(_ticket_app("http://{host}/put", put)) as base_url,
        Client(CANARY_KEY, base_url=base_url, retry=fast_retry()) as c,
    ):
        with pytest.raises(APIStatusError) as info:
            await c.upload(b"abc", filename="a.png")
    assert info.value.status == 307
    assert hits == ["/put"]


async def test_a_storage_host_trickling_its_answer_is_cut_at_upload_s() -> None:
    # sock_read restarts on every byte: only a total deadline ends an error body sent a
    # byte at a time (the client reads up to 2,000 bytes of it). The host trickles until
    # the client goes away.
    gone = anyio.Event()

    async def put(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=403)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b".")
                await anyio.sleep(0.05)
        except (ConnectionError, RuntimeError):
            gone.set()
        return resp

    timeouts = Timeouts(request_s=1.0, upload_s=0.5)
    async with (
        serve_aiohttp(_ticket_app("http://{host}/put", put)) as base_url,
        Client(CANARY_KEY, base_url=base_url, retry=fast_retry(), timeouts=timeouts) as c,
    ):
        with anyio.fail_after(20), pytest.raises(TransportError):
            await c.upload(b"abc", filename="a.png")
        with anyio.fail_after(10):
            await gone.wait()
