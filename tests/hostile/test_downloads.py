"""Hostile outputs: nothing written outside the folder, no internal host fetched, caps kept."""

from __future__ import annotations

import base64
import socket
import tracemalloc
from pathlib import Path

import pytest

from tests.hostile.conftest import SMALL, make_client
from tests.hostile.server import PNG, HostileServer
from tests.services import internal_host_name
from wavespeed_async import (
    OutputRefusedError,
    Prediction,
    SizeLimits,
    TransportError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._http.media import InternalAddress, public_socket

pytestmark = pytest.mark.anyio

TASK = "0123456789abcdef0123456789abcdef"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def done(*outputs: object, task_id: str = TASK) -> Prediction:
    return Prediction(id=task_id, status="completed", outputs=list(outputs))


@pytest.mark.parametrize(("media", "suffix"), [("png.sh", ".png"), ("page.html", ".bin")])
async def test_the_extension_comes_from_the_bytes_or_the_type_never_the_url(
    hostile: HostileServer, tmp_path: Path, media: str, suffix: str
) -> None:
    async with make_client(hostile) as client:
        [path] = await client.download(done(hostile.media(media)), tmp_path / "out")
    assert path == tmp_path / "out" / f"{TASK}_0{suffix}"
    assert tree(tmp_path) == ["out", f"out/{TASK}_0{suffix}"]


@pytest.mark.parametrize(
    "bad", ["../../../x", "/wavespeed-hostile-abs", "abc\x00def", "a" * 5000, "..", "\x1b[31m"]
)
async def test_a_hostile_task_id_never_chooses_where_files_go(
    hostile: HostileServer, tmp_path: Path, bad: str
) -> None:
    # Ids from the server are checked when decoded; a Prediction built by hand is checked
    # again before any file is named after it.
    out = tmp_path / "a" / "b" / "out"
    b64 = base64.b64encode(PNG).decode()
    async with make_client(hostile) as client:
        with pytest.raises(ValidationError):
            await client.download(done(b64, task_id=bad), out)
        with pytest.raises(ValidationError):
            await client.download(done(b64), out, stem=bad)
    assert tree(tmp_path) == ["a", "a/b", "a/b/out"]
    assert not Path("/wavespeed-hostile-abs_0.png").exists()


async def test_a_symlink_in_the_folder_cannot_redirect_a_write(
    hostile: HostileServer, tmp_path: Path
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside.png"
    out.mkdir()
    outside.write_bytes(b"keep")
    (out / f"{TASK}_0.png").symlink_to(outside)
    async with make_client(hostile) as client:
        with pytest.raises(ValidationError):
            await client.download(done(base64.b64encode(PNG).decode()), out)
    assert outside.read_bytes() == b"keep"


async def test_an_endless_output_is_refused_at_the_cap_in_bounded_memory(
    hostile: HostileServer, tmp_path: Path
) -> None:
    async with make_client(hostile) as client:
        tracemalloc.start()
        try:
            with pytest.raises(OutputRefusedError) as info:
                await client.download(done(hostile.media("endless")), tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "max_download_bytes" in str(info.value)
    assert info.value.task_id == TASK
    assert peak < SMALL.max_download_bytes + 4 * (1 << 20)
    assert tree(tmp_path) == []  # no partial file left


async def test_a_trickling_output_ends_at_its_deadline_and_leaves_nothing(
    hostile: HostileServer, tmp_path: Path
) -> None:
    async with make_client(hostile) as client:
        with pytest.raises(TransportError) as info:
            await client.download(done(hostile.media("trickle")), tmp_path)
    assert "timeout" in str(info.value)
    assert hostile.trickled > 0
    assert tree(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "http://10.0.0.1/x",
        "http://172.16.5.4/x",
        "http://192.168.1.1/x",
        "http://[fc00::1]/x",
        "http://0.0.0.0/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://LOCALHOST./x",
    ],
)
async def test_internal_output_urls_are_refused(
    hostile: HostileServer, tmp_path: Path, url: str
) -> None:
    async with make_client(hostile, allow_private_media=False) as client:
        with pytest.raises(OutputRefusedError) as info:
            await client.download(done(url), tmp_path)
    assert "allow_private_media" in str(info.value)
    assert tree(tmp_path) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_output_is_never_fetched_unless_allowed(
    hostile: HostileServer, tmp_path: Path, host: str
) -> None:
    url = hostile.media("png.sh").replace("127.0.0.1", host)
    async with make_client(hostile, allow_private_media=False) as client:
        with pytest.raises(OutputRefusedError):
            await client.download(done(url), tmp_path / "no")
    assert hostile.hits["/media/png.sh"] == 0
    # The opt-in lets it through.
    async with make_client(hostile, allow_private_media=True) as client:
        [path] = await client.download(done(url), tmp_path / "yes")
    assert path.read_bytes() == PNG


async def test_a_hostname_resolving_to_an_internal_address_is_refused_at_connect(
    hostile: HostileServer, tmp_path: Path
) -> None:
    # The check runs on the address actually connected to (after DNS, on every hop).
    name = internal_host_name()
    port = hostile.url.rsplit(":", 1)[1]
    async with make_client(hostile, allow_private_media=False) as client:
        with pytest.raises(OutputRefusedError) as info:
            await client.download(done(f"http://{name}:{port}/media/png.sh"), tmp_path)
    assert "resolves to internal address" in str(info.value)


def test_the_socket_factory_refuses_internal_addresses_and_allows_public_ones() -> None:
    for addr in ("127.0.0.1", "169.254.169.254", "10.1.2.3", "::1", "fe80::1", "::ffff:10.0.0.1"):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with pytest.raises(InternalAddress):
            public_socket((family, socket.SOCK_STREAM, 6, "", (addr, 80)))
    sock = public_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80)))
    sock.close()


def test_private_media_is_allowed_by_itself_only_for_a_local_api() -> None:
    from wavespeed_async import Client

    assert Client("k", base_url="http://127.0.0.1:9").allow_private_media
    assert Client("k", base_url="http://localhost:9").allow_private_media
    assert not Client("k", base_url="https://api.wavespeed.ai").allow_private_media
    assert not Client(
        "k", base_url="http://127.0.0.1:9", allow_private_media=False
    ).allow_private_media


async def test_every_download_failure_is_a_wavespeed_error(
    hostile: HostileServer, tmp_path: Path
) -> None:
    outputs = ["not base64 !", "file:///etc/passwd", hostile.media("missing")]
    async with make_client(hostile) as client:
        for output in outputs:
            with pytest.raises(WaveSpeedError):
                await client.download(done(output), tmp_path)
    assert tree(tmp_path) == []


async def test_an_output_url_s_credentials_and_signature_are_never_shown(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """An output URL's ``user:password@`` or signed query never shows in an error.

    The error shows where the download went, never those.
    """
    secret_url = (
        hostile.media("missing").replace("http://", "http://someone:pa55word@")
        + "?X-Amz-Signature=sig123"
    )
    internal = "http://someone:pa55word@169.254.169.254/x.png?X-Amz-Signature=sig123"
    async with make_client(hostile) as client:
        with pytest.raises(WaveSpeedError) as failed:
            await client.download(done(secret_url), tmp_path)
    async with make_client(hostile, allow_private_media=False) as client:
        with pytest.raises(OutputRefusedError) as refused:
            await client.download(done(internal), tmp_path)  # refused before any request
    for info in (failed, refused):
        shown = f"{info.value} {info.value!r} {getattr(info.value, 'url', '')}"
        assert "***@" in shown
        assert "pa55word" not in shown and "someone" not in shown and "sig123" not in shown


async def test_allow_private_media_is_fixed_when_the_client_is_created(
    hostile: HostileServer,
) -> None:
    # Downloads build their connect-time check from it once: an assignment that would not
    # take effect is refused instead.
    async with make_client(hostile) as client:
        assert client.allow_private_media  # a loopback API: its media may be local too
        with pytest.raises(AttributeError, match="allow_private_media"):
            client.allow_private_media = False  # type: ignore[misc]


async def test_cookies_the_servers_set_are_never_kept_or_sent_back(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """An API or output host that sets cookies makes the client keep nothing.

    Here 40 are set in an answer: no request carries a Cookie header, and no state grows
    with what it set. (By a host name: aiohttp's default jar already ignores cookies of an
    IP address.)
    """
    by_name = hostile.url.replace("127.0.0.1", "localhost")
    hostile.submit = "created_with_cookies"
    hostile.result = "completed_with_cookies"
    hostile.outputs = [f"{by_name}/media/cookie.png"]
    async with make_client(hostile, base_url=by_name) as client:
        for i in range(3):
            pred = await client.run("wavespeed-ai/flux-kontext-dev", {"prompt": f"p{i}"})
            await client.download(pred, tmp_path / "out")
    assert hostile.hits["/media/cookie.png"] == 3
    assert len(hostile.created) == 3
    assert hostile.cookies_sent == []


async def test_a_task_with_more_outputs_than_the_cap_is_refused_before_any_is_fetched(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """The number of outputs is capped, as each output's size is.

    So a server answering thousands of outputs cannot fill the disk one capped file at a time.
    """
    many = done(*[hostile.media("png.sh")] * 5)
    async with make_client(hostile, sizes=SizeLimits(max_outputs=4)) as client:
        with pytest.raises(OutputRefusedError, match=r"5 outputs.*SizeLimits.max_outputs"):
            await client.download(many, tmp_path / "out")
        assert hostile.hits["/media/png.sh"] == 0
        assert len(await client.download(done(*[hostile.media("png.sh")] * 4), tmp_path)) == 4
    assert hostile.hits["/media/png.sh"] == 4
    with pytest.raises(ValidationError, match="max_outputs"):
        SizeLimits(max_outputs=0)


async def test_running_out_of_file_descriptors_is_said_and_kept_as_the_cause(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import aiohttp

    from wavespeed_async._http import media

    def no_descriptors(addr_info: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    def connector(**kw: object) -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(socket_factory=no_descriptors)

    monkeypatch.setattr(media, "media_connector", connector)
    async with make_client(hostile) as client:
        with pytest.raises(TransportError) as info:
            await client.download(done(hostile.media("png.sh")), tmp_path / "out")
    text = str(info.value)
    assert "too many open files" in text and "ulimit -n" in text
    assert "connect" not in text.split("png.sh", 1)[1]
    assert media.too_many_open_files(info.value)  # the OSError is kept as the cause
    assert info.value.task_id == TASK
