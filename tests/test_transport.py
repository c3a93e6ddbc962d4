"""Answers the emulator does not give on purpose, from a scripted server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import serve_aiohttp
from wavespeed_async import (
    BadRequestError,
    Client,
    DecodeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknown,
    Timeouts,
)
from wavespeed_async._runtime.api import Api

pytestmark = pytest.mark.anyio

Handler = Callable[[web.Request], Any]
TASK = "a" * 32


def envelope(data: Any, code: int = 200, message: str = "success") -> web.Response:
    return web.json_response({"code": code, "message": message, "data": data})


def prediction(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": TASK, "model": "m/x", "status": status, "outputs": [], "error": "", **extra}


class Scripted:
    """A server whose answers a test scripts: a list of handlers per route, used in turn."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Handler]] = {}
        self.hits: dict[str, int] = {}
        self.base_url = ""

    def on(self, route: str, *handlers: Handler) -> None:
        self.routes[route] = list(handlers)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        route = f"{request.method} {request.path}"
        n = self.hits.get(route, 0)
        self.hits[route] = n + 1
        handlers = self.routes[route]
        result = handlers[min(n, len(handlers) - 1)](request)
        assert isinstance(result, web.StreamResponse)
        return result


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", s.dispatch)
    async with serve_aiohttp(app) as s.base_url:
        yield s


def client_for(s: Scripted) -> Client:
    return Client(CANARY_KEY, base_url=s.base_url, poll=fast_poll(), retry=fast_retry(), seed=3)


SUBMIT = "POST /api/v3/m/x"
RESULT = f"GET /api/v3/predictions/{TASK}/result"


async def test_an_error_code_inside_a_200_is_an_error(scripted: Scripted) -> None:
    scripted.on("GET /api/v3/balance", lambda r: envelope(None, code=500, message="oops"))
    async with client_for(scripted) as c:
        with pytest.raises(ServerError) as info:
            await c.balance()
    assert info.value.status == 200
    assert info.value.code == 500
    assert scripted.hits["GET /api/v3/balance"] == 6  # a GET: retried up to max_attempts


async def test_a_submit_error_that_names_a_task_is_followed_not_resent(
    scripted: Scripted,
) -> None:
    # A sync-mode wait that ran out: 200, code 5004, with the task id.
    scripted.on(SUBMIT, lambda r: envelope(prediction("processing"), code=5004, message="timeout"))
    scripted.on(
        RESULT,
        lambda r: envelope(prediction("processing")),
        lambda r: envelope(prediction("completed", outputs=["http://x/1.png"])),
    )
    created: list[str] = []
    async with client_for(scripted) as c:
        c.on_task_created = lambda p: created.append(p.id)
        pred = await c.run("m/x", {"prompt": "p"}, sync=True)
    assert pred.ok
    assert created == [TASK]
    assert scripted.hits[SUBMIT] == 1


async def test_submit_is_resent_after_429_and_503_with_retry_after(scripted: Scripted) -> None:
    scripted.on(
        SUBMIT,
        lambda r: web.json_response(
            {"code": 429, "message": "slow down"}, status=429, headers={"Retry-After": "0"}
        ),
        lambda r: web.Response(status=503, headers={"Retry-After": "0"}, text="busy"),
        lambda r: envelope(prediction("created")),
    )
    async with client_for(scripted) as c:
        pred = await c.submit("m/x", {"prompt": "p"})
    assert pred.id == TASK
    assert scripted.hits[SUBMIT] == 3


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (lambda r: web.Response(status=503, text="no hint"), "server_error"),
        (lambda r: web.Response(status=502, text="<html>bad gateway</html>"), "server_error"),
        (lambda r: web.Response(status=200, text="{not json"), "malformed"),
    ],
)
async def test_a_lost_submit_answer_is_never_resent(
    scripted: Scripted, answer: Handler, cause: str
) -> None:
    scripted.on(SUBMIT, answer)
    async with client_for(scripted) as c:
        with pytest.raises(SubmissionOutcomeUnknown) as info:
            await c.submit("m/x", {"prompt": "p"})
    assert scripted.hits[SUBMIT] == 1
    assert info.value.cause_kind == cause
    assert info.value.input == {"prompt": "p"}


async def test_retry_after_as_an_http_date_is_honoured(scripted: Scripted) -> None:
    when = email.utils.formatdate(time.time() + 1, usegmt=True)
    scripted.on(
        "GET /api/v3/balance",
        lambda r: web.Response(status=429, headers={"Retry-After": when}, text="{}"),
        lambda r: envelope({"balance": 1.5}),
    )
    async with client_for(scripted) as c:
        assert await c.balance() == 1.5
        # The date was in the future: a cool-down held every request of the client back.
        assert c.flow.cooldowns_started == 1


@pytest.mark.parametrize(
    ("status", "body", "cls", "text"),
    [
        (400, {"code": 400, "message": "prompt: required"}, BadRequestError, "prompt"),
        (
            403,
            {"error_code": 1001, "error": "insufficient balance"},
            PermissionDeniedError,
            "insufficient balance",
        ),
        (429, {"error": "too many requests"}, RateLimitError, "too many"),
        (413, "payload too large", BadRequestError, "too large"),
    ],
)
async def test_error_bodies_of_every_shape_become_typed_errors(
    scripted: Scripted, status: int, body: Any, cls: type[Exception], text: str
) -> None:
    payload = json.dumps(body) if not isinstance(body, str) else body
    scripted.on(SUBMIT, lambda r: web.Response(status=status, text=payload))
    async with Client(
        CANARY_KEY,
        base_url=scripted.base_url,
        retry=fast_retry().__class__(max_submit_attempts=1, backoff_base_s=0.001),
    ) as c:
        with pytest.raises(cls) as info:
            await c.submit("m/x", {"prompt": "p"})
    assert text in str(info.value)
    assert CANARY_KEY not in str(info.value)


async def test_unknown_fields_and_statuses_do_not_break_polling(scripted: Scripted) -> None:
    scripted.on(SUBMIT, lambda r: envelope(prediction("created", executionTime=3, input={})))
    scripted.on(
        RESULT,
        lambda r: envelope(prediction("warming-up", brand_new_field=[1, 2])),
        lambda r: web.Response(status=200, text="{truncated"),  # a malformed GET is retried
        lambda r: envelope(
            prediction(
                "completed",
                outputs=["http://x/1.png"],
                timings={"inference": 1234},
                has_nsfw_contents=[False],
            )
        ),
    )
    async with client_for(scripted) as c:
        pred = await c.run("m/x", {"prompt": "p"})
    assert pred.ok
    assert pred.inference_ms == 1234
    assert pred.has_nsfw_contents == [False]


async def test_a_result_without_data_is_a_decode_error(scripted: Scripted) -> None:
    scripted.on(RESULT, lambda r: envelope(None))
    async with client_for(scripted) as c:
        with pytest.raises(DecodeError) as info:
            await c.get_result(TASK)
    assert info.value.task_id == TASK


async def test_the_key_is_sent_to_the_api_and_attribution_headers_too(
    scripted: Scripted,
) -> None:
    seen: dict[str, str] = {}

    def capture(r: web.Request) -> web.Response:
        seen.update(r.headers)
        return envelope({"balance": 2.0})

    scripted.on("GET /api/v3/balance", capture)
    async with client_for(scripted) as c:
        await c.balance()
    assert seen["Authorization"] == f"Bearer {CANARY_KEY}"
    assert seen["X-Client-Name"] == "wavespeed-async"


async def test_a_submit_carries_the_session_headers_and_its_content_type(
    scripted: Scripted,
) -> None:
    seen: dict[str, str] = {}

    def capture(r: web.Request) -> web.Response:
        seen.update(r.headers)
        return envelope(prediction("created"))

    scripted.on(SUBMIT, capture)
    async with client_for(scripted) as c:
        await c.submit("m/x", {"prompt": "p"})
    assert seen["Authorization"] == f"Bearer {CANARY_KEY}"
    assert seen["Content-Type"] == "application/json"
    assert seen["X-Client-Name"] == "wavespeed-async"


def test_a_get_has_one_total_deadline_and_a_post_a_separate_connect_budget() -> None:
    timeouts = Timeouts(connect_s=3.0, request_s=20.0)
    make = Api._make_timeout
    dummy = type("T", (), {"timeouts": timeouts})()
    get = make(dummy, 7.0, True)
    # The whole GET attempt, pool wait included, within its read budget; one timer.
    assert (get.total_s, get.read_s, get.pool_s, get.connect_s) == (7.0, None, None, 3.0)
    post = make(dummy, 7.0, False)
    # A submit's connect phase is told apart (re-sent safely), and it still has a total.
    assert (post.total_s, post.pool_s, post.connect_s, post.read_s) == (27.0, 20.0, 3.0, 7.0)


async def test_a_refused_submit_that_names_a_task_still_reports_its_id(
    scripted: Scripted,
) -> None:
    scripted.on(SUBMIT, lambda r: envelope(prediction("failed"), code=400, message="bad image"))
    seen: list[tuple[int, str]] = []
    async with client_for(scripted) as c:
        async with c.run_many(
            "m/x", [{"prompt": "p"}], on_task_created=lambda i, t: seen.append((i, t))
        ) as results:
            [r] = [r async for r in results]
    assert isinstance(r.error, BadRequestError)
    assert r.id == TASK
    assert seen == [(0, TASK)]
    assert scripted.hits[SUBMIT] == 1
