"""The API key never shows in a traceback printed with its locals."""

from __future__ import annotations

import traceback

import anyio
import pytest

from tests.conftest import CANARY_KEY
from tests.hostile.conftest import make_client
from tests.hostile.server import HostileServer
from wavespeed_async import Client, ValidationError
from wavespeed_async._core.secret import Secret

pytestmark = pytest.mark.anyio

TASK = "0123456789abcdef0123456789abcdef"


def with_locals(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


@pytest.mark.parametrize("call", ["get_result", "submit"])
async def test_a_request_cancelled_mid_flight_shows_no_key_in_its_locals(
    hostile: HostileServer, call: str
) -> None:
    # Cancelled while aiohttp holds the request: every frame down to the socket, with its
    # locals (headers included), is in the traceback.
    hostile.result = hostile.submit = "hang"
    async with make_client(hostile) as client:
        with pytest.raises(TimeoutError) as info:
            with anyio.fail_after(0.1):
                if call == "submit":
                    await client.submit("wavespeed-ai/flux-kontext-dev", {"prompt": "x"})
                else:
                    await client.get_result(TASK)
        text = with_locals(info.value)
        assert "_attempt" in text  # the transport's frames were captured
        assert CANARY_KEY not in text
        assert CANARY_KEY not in repr(vars(client)) + repr(vars(client._api))


def test_a_bad_setting_shows_no_key_in_its_locals() -> None:
    with pytest.raises(ValidationError) as info:
        Client(CANARY_KEY, base_url="ftp://example.com")
    assert CANARY_KEY not in with_locals(info.value)


def test_a_secret_is_masked_everywhere_but_its_header() -> None:
    secret = Secret(CANARY_KEY)
    header = secret.auth_header()
    assert CANARY_KEY not in repr(secret) + str(secret) + repr(header) + repr({"h": header})
    assert str(header) == f"Bearer {CANARY_KEY}"


def test_a_bad_fastapi_setting_shows_no_key_or_secret_in_its_locals() -> None:
    pytest.importorskip("fastapi")
    from wavespeed_async.fastapi import WaveSpeed

    with pytest.raises(ValidationError) as info:  # (no local of this frame holds either)
        WaveSpeed(
            api_key=CANARY_KEY,
            webhook_secret="whsec_" + CANARY_KEY[::-1],
            tolerance_s=float("nan"),
        )
    text = with_locals(info.value)
    assert "client_kwargs" in text  # the constructor's frame was captured
    assert CANARY_KEY not in text
    assert CANARY_KEY[::-1] not in text


def test_a_bad_share_setting_shows_no_redis_password_in_its_locals() -> None:
    pytest.importorskip("redis")
    from wavespeed_async.redis import RedisShare

    with pytest.raises(ValidationError) as info:  # (no local of this frame holds it)
        RedisShare("redis://:" + CANARY_KEY[::-1] + "@127.0.0.1:6379/0", lease_ttl_s=-1.0)
    text = with_locals(info.value)
    assert "reconnect_interval_s" in text  # the constructor's frame was captured
    assert CANARY_KEY[::-1] not in text


@pytest.mark.parametrize(
    "url", ["http://user:pAssw0rd@127.0.0.1:9", "ftp://user:pAssw0rd@example.com"]
)
def test_a_base_url_with_a_password_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url") as info:
        Client(CANARY_KEY, base_url=url)
    assert info.value.field == "base_url"
    tb = info.value.__traceback__
    assert tb is not None and tb.tb_next is not None
    # From the Client's frames on (this test's own frame holds the URL it wrote).
    text = with_locals(info.value.with_traceback(tb.tb_next))
    assert "__init__" in text
    assert "pAssw0rd" not in text and CANARY_KEY not in text
    assert "127.0.0.1" in str(info.value) or "example.com" in str(info.value)
