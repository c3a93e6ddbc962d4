"""Answers no honest API would give: every one ends in a typed WaveSpeedError, in time."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from tests.hostile.conftest import SMALL, make_client
from tests.hostile.server import HOSTILE_IDS, HostileServer
from wavespeed_async import (
    APIStatusError,
    BadRequestError,
    DecodeError,
    RateLimitError,
    ServerError,
    SubmissionOutcomeUnknown,
    TransportError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.errors import ConnectError
from wavespeed_async._http import transport as _transport

pytestmark = pytest.mark.anyio

TASK = "0123456789abcdef0123456789abcdef"
MODEL = "wavespeed-ai/flux-kontext-dev"

#: Undecodable answers, and the error a GET of a task gets for each.
UNDECODABLE: dict[str, type[WaveSpeedError]] = {
    "bad_utf8_200": DecodeError,
    "bad_utf8_400": BadRequestError,
    "bad_utf8_500": ServerError,
    "deep_200": DecodeError,
    "deep_400": BadRequestError,
    "deep_500": ServerError,
    **{f"id_{name}": DecodeError for name in HOSTILE_IDS},
    "id_in_error": DecodeError,
}


@pytest.mark.parametrize("answer", sorted(UNDECODABLE))
async def test_get_result_turns_every_undecodable_answer_into_a_typed_error(
    hostile: HostileServer, answer: str
) -> None:
    hostile.result = answer
    async with make_client(hostile) as client:
        with pytest.raises(WaveSpeedError) as info:
            await client.get_result(TASK)
    assert type(info.value) is UNDECODABLE[answer]
    assert info.value.task_id == TASK
    # A decode failure is retried like any malformed GET answer.
    if UNDECODABLE[answer] is DecodeError:
        assert hostile.hits[f"/api/v3/predictions/{TASK}/result"] == 2


@pytest.mark.parametrize(
    "answer",
    ["bad_utf8_200", "bad_utf8_500", "deep_200", "deep_500", "id_in_error"]
    + [f"id_{name}" for name in HOSTILE_IDS],
)
async def test_submit_with_an_undecodable_answer_may_have_created_a_task(
    hostile: HostileServer, answer: str
) -> None:
    # A hostile id in a submit's answer means a task may exist: never silently lost,
    # never re-sent.
    hostile.submit = answer
    async with make_client(hostile) as client:
        with pytest.raises(SubmissionOutcomeUnknown) as info:
            await client.submit(MODEL, {"prompt": "x"})
    assert info.value.cause_kind in ("malformed", "server_error")
    assert hostile.hits[f"/api/v3/{MODEL}"] == 1


@pytest.mark.parametrize("answer", ["bad_utf8_200", "deep_200"])
@pytest.mark.parametrize("call", ["balance", "webhook_secret", "upload"])
async def test_balance_secret_and_upload_answers_that_do_not_decode_are_decode_errors(
    hostile: HostileServer, answer: str, call: str
) -> None:
    hostile.result = hostile.submit = answer
    async with make_client(hostile) as client:
        with pytest.raises(DecodeError):
            if call == "upload":
                await client.upload(b"\x89PNG\r\n\x1a\n", filename="a.png")
            else:
                await getattr(client, call)()


@pytest.mark.parametrize("answer", ["bad_utf8_400", "deep_400"])
async def test_submit_refused_with_an_undecodable_4xx_is_a_bad_request(
    hostile: HostileServer, answer: str
) -> None:
    hostile.submit = answer
    async with make_client(hostile) as client:
        with pytest.raises(BadRequestError):
            await client.submit(MODEL, {"prompt": "x"})


@pytest.mark.parametrize("answer", ["bad_utf8_200", "deep_200", "id_dotdot", "id_nul"])
async def test_run_keeps_the_task_id_when_its_result_is_undecodable(
    hostile: HostileServer, answer: str
) -> None:
    hostile.result = answer
    async with make_client(hostile) as client:
        with pytest.raises(DecodeError) as info:
            await client.run(MODEL, {"prompt": "x"})
    assert hostile.created == [info.value.task_id]


@pytest.mark.parametrize("answer", ["bad_utf8_200", "deep_500", "id_long"])
async def test_run_many_makes_one_bad_answer_one_jobs_result(
    hostile: HostileServer, answer: str
) -> None:
    bad: list[str] = []

    def result(task_id: str) -> str:
        if not bad and task_id in hostile.created[2:3]:
            bad.append(task_id)
        return answer if bad and task_id == bad[0] else "completed"

    hostile.result = result
    async with (
        make_client(hostile) as client,
        client.run_many(MODEL, [{"prompt": str(i)} for i in range(6)], concurrency=1) as results,
    ):
        got = [r async for r in results]
    assert len(got) == 6
    failed = [r for r in got if r.error is not None]
    assert [r.id for r in failed] == bad
    assert isinstance(failed[0].error, WaveSpeedError)
    assert sorted(r.id for r in got if r.id) == sorted(hostile.created)


async def test_harmless_quirks_do_not_make_polls_undecodable(hostile: HostileServer) -> None:
    # null error/timings/urls, [null] flags, unknown fields and an unknown status.
    hostile.result = "quirks"
    async with make_client(hostile) as client:
        pred = await client.run(MODEL, {"prompt": "x"})
    assert pred.ok and pred.error == "" and pred.timings is None
    assert pred.has_nsfw_contents == [None]
    # The unknown status "warming_up" was taken as not finished: polling went on.
    assert hostile.polls[pred.id] == 2


async def test_an_answer_in_pieces_is_read_to_its_end(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first chunk of most answers is the whole answer; this one's second half comes only
    # once the client reads on (else the server holds it past the poll's deadline).
    read_rest = _transport._read_rest
    calls: list[bytes] = []

    async def reading_on(resp: Any, first: bytes, cap: int) -> bytes | None:
        calls.append(first)
        hostile.reading_rest.set()
        return await read_rest(resp, first, cap)

    monkeypatch.setattr(_transport, "_read_rest", reading_on)
    hostile.result = "completed_in_pieces"
    async with make_client(hostile) as client:
        pred = await client.run(MODEL, {"prompt": "x"})
    assert pred.ok and pred.status == "completed"
    assert len(calls) == 1 and calls[0].startswith(b'{"code": 200')


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "a\x00b", "a" * 5000, "", "a?b", "a/b"])
async def test_caller_task_ids_are_checked_before_any_request(
    hostile: HostileServer, bad: str
) -> None:
    async with make_client(hostile) as client:
        with pytest.raises(ValidationError) as info:
            await client.get_result(bad)
        assert info.value.field == "task_id"
        with pytest.raises(ValidationError):
            await client.wait(bad)
        async with client.wait_many([bad, TASK]) as results:
            got = {r.index: r async for r in results}
        with pytest.raises(ValidationError) as refused:
            await client.delete([TASK, bad])
        assert refused.value.field == "task_ids[1]"
    assert isinstance(got[0].error, ValidationError) and got[0].id is None
    assert got[1].ok
    # Only the good id ever reached the server.
    assert set(hostile.hits) == {f"/api/v3/predictions/{TASK}/result"}


async def test_a_trickling_answer_ends_at_its_total_deadline(hostile: HostileServer) -> None:
    # One byte every 20 ms never trips a per-read timeout of 300 ms; the total deadline does.
    hostile.result = "trickle"
    async with make_client(hostile) as client:
        with pytest.raises(TransportError) as info:
            await client.get_result(TASK)
    assert not isinstance(info.value, ConnectError)
    assert "no answer within" in str(info.value)
    assert hostile.trickled > 0


async def test_a_trickling_status_line_ends_at_its_total_deadline(hostile: HostileServer) -> None:
    async with make_client(hostile, base_url=hostile.raw_url) as client:
        with pytest.raises(TransportError) as info:
            await client.get_result(TASK)
    assert not isinstance(info.value, ConnectError)
    assert "no answer within" in str(info.value)
    assert hostile.hits["raw"] == 2 and hostile.trickled > 0


async def test_a_trickling_submit_answer_is_an_unknown_outcome(hostile: HostileServer) -> None:
    hostile.submit = "trickle"
    async with make_client(hostile) as client:
        with pytest.raises(SubmissionOutcomeUnknown) as info:
            await client.submit(MODEL, {"prompt": "x"})
    assert info.value.cause_kind == "timeout"


@pytest.mark.parametrize("answer", ["endless", "huge_declared", "gzip_bomb"])
async def test_an_oversized_answer_is_refused_in_bounded_memory(
    hostile: HostileServer, answer: str
) -> None:
    hostile.result = answer
    if answer == "gzip_bomb":
        hostile.bomb()  # built before measuring
    async with make_client(hostile) as client:
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError) as info:
                await client.get_result(TASK)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "max_answer_bytes" in str(info.value)
    assert peak < SMALL.max_answer_bytes + 4 * (1 << 20)
    assert hostile.flooded < 50 * (1 << 20)


async def test_huge_headers_are_a_transport_error(hostile: HostileServer) -> None:
    hostile.result = "huge_headers"
    async with make_client(hostile) as client:
        with pytest.raises(TransportError):
            await client.get_result(TASK)


async def test_an_oversized_error_answer_keeps_its_status_and_retry_after(
    hostile: HostileServer,
) -> None:
    hostile.result = "huge_429"
    hostile.submit = "huge_429"
    async with make_client(hostile) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_result(TASK)
        assert info.value.status == 429 and info.value.retry_after == 7.0
        assert "max_answer_bytes" in str(info.value)
        # A 429 proves the submit was refused: no task, so not an unknown outcome.
        with pytest.raises(RateLimitError) as refused:
            await client.submit(MODEL, {"prompt": "x"})
        assert refused.value.retry_after == 7.0


async def test_an_api_answer_that_redirects_is_an_error_not_followed(
    hostile: HostileServer,
) -> None:
    """An API answer that redirects is the answer, typed, and its Location is not requested.

    A redirect could lead a request that carries the key anywhere (an internal address, a
    host whose answer would be taken for the API's), and the API never redirects.
    """
    hostile.result = "redirect"
    async with make_client(hostile) as client:
        with pytest.raises(APIStatusError) as info:
            await client.get_result(TASK)
    assert info.value.status == 302
    assert hostile.hits["/media/envelope"] == 0
