"""Every request of a Client through a real loopback HTTP proxy: proxy= and trust_env=."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import Proxy, serve_proxy
from wavespeed_async import AiohttpTransport, APIStatusError, Client, ValidationError
from wavespeed_async.emulator import Emulator

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
PASSWORD = "pr0xy-s3cret-771"


async def _everything(client: Client, tmp_path: Path) -> None:
    """One of each kind of request.

    A task run (submit, polls), an upload (ticket, PUT), a download of the outputs, the
    balance.
    """
    url = await client.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, filename="in.png")
    assert url.startswith("http://127.0.0.1")
    pred = await client.run(PRO, {"prompt": "through the proxy"})
    assert pred.ok
    [path] = await client.download(pred, tmp_path)
    assert path.stat().st_size > 0
    await client.balance()


def _kinds(proxy: Proxy) -> set[str]:
    """What kinds of request the proxy forwarded."""
    kinds = set()
    for method, url in proxy.forwarded:
        path = url.split("://", 1)[1].split("/", 1)[1]
        if method == "POST" and path.startswith("api/v3/wavespeed-ai/"):
            kinds.add("submit")
        elif method == "GET" and path.endswith("/result"):
            kinds.add("poll")
        elif method == "POST" and path == "api/v3/media/uploads":
            kinds.add("ticket")
        elif method == "PUT":
            kinds.add("put")
        elif method == "GET" and path.startswith("media/outputs/"):
            kinds.add("download")
        elif path == "api/v3/balance":
            kinds.add("balance")
    return kinds


async def test_every_request_goes_through_the_proxy_given(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with serve_proxy() as proxy:
        async with Client(
            CANARY_KEY,
            base_url=emulator.base_url,
            poll=fast_poll(),
            retry=fast_retry(),
            proxy=proxy.url,
        ) as client:
            await _everything(client, tmp_path)
            sent = client._api.requests_sent if client._api else 0
    assert _kinds(proxy) == {"submit", "poll", "ticket", "put", "download", "balance"}
    api = [u for _, u in proxy.forwarded if "/api/v3/" in u]
    assert len(api) == sent  # not one API request went around the proxy


async def test_trust_env_takes_the_proxy_from_the_environment(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_proxy() as proxy:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with Client(
            CANARY_KEY,
            base_url=emulator.base_url,
            poll=fast_poll(),
            retry=fast_retry(),
            trust_env=True,
        ) as client:
            await _everything(client, tmp_path)
    assert _kinds(proxy) == {"submit", "poll", "ticket", "put", "download", "balance"}


async def test_without_trust_env_the_environment_is_ignored(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with Client(
            CANARY_KEY, base_url=emulator.base_url, poll=fast_poll(), retry=fast_retry()
        ) as client:
            assert (await client.run(PRO, {"prompt": "direct"})).ok
    assert proxy.forwarded == []


async def test_a_proxy_password_is_sent_to_the_proxy_and_shown_nowhere(
    emulator: Emulator,
) -> None:
    async with serve_proxy(auth=("user", PASSWORD)) as proxy:
        with_password = proxy.url.replace("http://", f"http://user:{PASSWORD}@")
        client = Client(
            CANARY_KEY,
            base_url=emulator.base_url,
            poll=fast_poll(),
            retry=fast_retry(),
            proxy=with_password,
        )
        async with client:
            assert (await client.run(PRO, {"prompt": "authenticated"})).ok
            shown = repr(client) + repr(client._api.transport if client._api else None)
        assert proxy.refused == 0 and proxy.forwarded
        assert PASSWORD not in shown
        wrong = proxy.url.replace("http://", "http://user:wrong-pass@")
        async with Client(
            CANARY_KEY, base_url=emulator.base_url, retry=fast_retry(), proxy=wrong
        ) as refused:
            with pytest.raises(APIStatusError) as info:
                await refused.balance()
        assert info.value.status == 407
        text = "".join(traceback.format_exception(info.value)) + repr(vars(info.value))
        assert "wrong-pass" not in text and PASSWORD not in text


def test_a_bad_proxy_is_refused_naming_it_without_its_password() -> None:
    with pytest.raises(ValidationError) as info:
        Client(CANARY_KEY, proxy=f"ftp://user:{PASSWORD}@proxy.example")
    assert info.value.field == "proxy"
    assert PASSWORD not in str(info.value)
    with pytest.raises(ValidationError, match="give them to it"):
        Client(CANARY_KEY, proxy="http://127.0.0.1:3128", transport=AiohttpTransport())
