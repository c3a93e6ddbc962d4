"""Webhook verification that cannot be switched off, flooded, replayed or crashed.

The router runs for real (uvicorn on 127.0.0.1) against a small counting API server, so
the number of webhook-secret fetches each kind of delivery causes is measured, not assumed.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations at runtime.

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fastapi import FastAPI

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import serve_aiohttp
from tests.test_fastapi import PATH, serve_app, signed
from tests.test_webhooks import BODY, NOW, SECRET, headers
from wavespeed_async import ValidationError, WebhookVerificationError, verify_webhook
from wavespeed_async._core.webhooks import Delivery, ReplayGuard
from wavespeed_async.fastapi import WaveSpeed

pytestmark = pytest.mark.anyio

TASK_BODY = json.dumps({"id": "b" * 32, "status": "completed", "outputs": []}).encode()


# -- verify_webhook ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "whsec_"])
def test_an_empty_secret_is_refused_not_used(secret: str) -> None:
    # Signed with the empty key, such a delivery used to verify.
    forged = headers(secret=secret)
    with pytest.raises(ValidationError, match="secret"):
        verify_webhook(secret, forged, BODY, now=NOW)


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_tolerance_that_is_not_a_finite_positive_number_is_refused(tolerance: float) -> None:
    stale = headers(timestamp=NOW - 10**9)
    with pytest.raises(ValidationError, match="tolerance_s"):
        verify_webhook(SECRET, stale, BODY, tolerance_s=tolerance, now=NOW)
    with pytest.raises(ValidationError, match="tolerance_s"):
        WaveSpeed(tolerance_s=tolerance)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,  # RecursionError-deep nesting
        b'{"id": "\xff\xfe", "status": "completed", "outputs": []}',  # bad UTF-8
        b"\x00",
    ],
    ids=["deep", "bad-utf8", "nul"],
)
def test_a_signed_but_undecodable_body_is_a_verification_error(body: bytes) -> None:
    with pytest.raises(WebhookVerificationError, match="not a prediction"):
        verify_webhook(SECRET, headers(body=body), body, now=NOW)


def test_the_replay_guard_remembers_ids_within_the_window_in_bounded_memory() -> None:
    guard = ReplayGuard(tolerance_s=300, max_ids=3)
    first = Delivery("msg_1", NOW, ())
    assert guard.first_time(first, now=NOW)
    assert not guard.first_time(first, now=NOW + 1)
    for i in range(2, 10):
        assert guard.first_time(Delivery(f"msg_{i}", NOW, ()), now=NOW)
    assert len(guard) == 3  # the oldest ids are forgotten first
    # Ids whose timestamp left the window are dropped (their replays fail the time check).
    assert guard.first_time(Delivery("msg_late", NOW + 1000, ()), now=NOW + 1000)
    assert len(guard) == 1
    with pytest.raises(ValidationError, match="max_ids"):
        ReplayGuard(max_ids=0)


# -- the router -------------------------------------------------------------------------


class SecretServer:
    """The one API route the router calls, answering as told and counting calls."""

    def __init__(self) -> None:
        self.fetches = 0
        self.answer: tuple[int, Any] = (500, {"code": 500, "message": "down"})

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        status, body = self.answer
        return web.json_response(body, status=status)


@contextlib.asynccontextmanager
async def secret_server() -> AsyncIterator[tuple[SecretServer, str]]:
    server = SecretServer()
    app = web.Application()
    app.router.add_get("/api/v3/webhook/secret", server.handle)
    async with serve_aiohttp(app) as base_url:
        yield server, base_url


def make_ws(base_url: str, **kwargs: Any) -> WaveSpeed:
    return WaveSpeed(
        api_key=CANARY_KEY,
        base_url=base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        public_url="http://placeholder.invalid",
        **kwargs,
    )


@contextlib.asynccontextmanager
async def serve(ws: WaveSpeed) -> AsyncIterator[str]:
    app = FastAPI(lifespan=ws.lifespan)
    app.include_router(ws.router)
    async with serve_app(app, ws) as url:
        yield url


async def post_all(
    url: str, deliveries: list[tuple[dict[str, str], bytes]]
) -> list[tuple[int, Any]]:
    seen: list[tuple[int, Any]] = []
    async with aiohttp.ClientSession() as http:
        for hdrs, data in deliveries:
            async with http.post(f"{url}{PATH}", data=data, headers=hdrs) as resp:
                seen.append((resp.status, await resp.json()))
    return seen


@pytest.mark.parametrize("secret", ["", "whsec_"])
def test_an_empty_secret_given_is_refused_at_construction(secret: str) -> None:
    with pytest.raises(ValidationError, match="webhook_secret"):
        WaveSpeed(webhook_secret=secret)


async def test_junk_deliveries_fetch_no_secret() -> None:
    junk: list[tuple[dict[str, str], bytes]] = [
        ({}, b"{}"),
        ({"webhook-id": "x"}, b"{}"),
        ({"webhook-id": "x", "webhook-timestamp": "soon", "webhook-signature": "v3,0"}, b""),
        (signed(SECRET, TASK_BODY, timestamp=int(time.time()) - 10_000), TASK_BODY),
    ] * 2
    async with secret_server() as (api, base), serve(make_ws(base)) as url:
        answers = await post_all(url, junk)
    assert [status for status, _ in answers] == [401] * 8
    assert api.fetches == 0


async def test_a_failed_secret_fetch_is_not_repeated_for_every_delivery() -> None:
    async with secret_server() as (api, base):
        ws = make_ws(base)
        async with serve(ws) as url:
            first = await post_all(url, [(signed(SECRET, TASK_BODY), TASK_BODY)])
            one_fetch = api.fetches  # one fetch, with its own retries
            rest = await post_all(url, [(signed(SECRET, TASK_BODY), TASK_BODY)] * 7)
    assert [s for s, _ in first + rest] == [503] * 8
    assert one_fetch >= 1
    assert api.fetches == one_fetch


@pytest.mark.parametrize("answer", ["", "whsec_"])
async def test_an_empty_secret_from_the_server_is_a_503_not_a_pass(answer: str) -> None:
    async with secret_server() as (api, base):
        api.answer = (200, {"code": 200, "message": "success", "data": {"secret": answer}})
        ws = make_ws(base)
        async with serve(ws) as url:
            # Signed with the empty key: it used to verify.
            got = await post_all(url, [(signed(answer, TASK_BODY), TASK_BODY)] * 3)
    assert [s for s, _ in got] == [503] * 3
    assert api.fetches == 1
    assert ws.deliveries_received == 0


async def test_replays_are_acknowledged_once_processed_once_and_bad_bodies_are_400() -> None:
    async with secret_server() as (api, base):
        api.answer = (200, {"code": 200, "message": "success", "data": {"secret": SECRET}})
        delivered: list[str] = []
        ws = make_ws(base, on_delivery=lambda pred: delivered.append(pred.id))
        deep = b"[" * 200_000 + b"]" * 200_000
        bad_utf8 = b'{"id": "\xff", "status": "completed", "outputs": []}'
        replayed = (signed(SECRET, TASK_BODY), TASK_BODY)
        async with serve(ws) as url:
            got = await post_all(
                url,
                [replayed] * 3
                + [(signed(SECRET, deep), deep), (signed(SECRET, bad_utf8), bad_utf8)],
            )
    assert [s for s, _ in got] == [200, 200, 200, 400, 400]
    assert delivered == ["b" * 32]
    assert ws.deliveries_received == 1
    assert ws.deliveries_replayed == 2
    assert api.fetches == 1
