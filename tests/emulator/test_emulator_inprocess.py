"""``Emulator(port=None)`` and ``Emulator.handle``: the same API with no socket at all."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import msgspec
import pytest

from wavespeed_async.emulator import (
    IN_PROCESS_BASE_URL,
    EmulatedDisconnect,
    EmulatedResponse,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
    ManualClock,
    ResetAfterRequest,
    ResetBeforeRequest,
)

from .helpers import DEV, KEY, PRO, call, in_process, parse_png, run_task, until

pytestmark = pytest.mark.anyio


def _no_sockets(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the in-process emulator opened a socket")


async def test_two_hundred_submit_and_poll_cycles_open_no_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "socket", _no_sockets)
    monkeypatch.setattr(socket, "create_connection", _no_sockets)
    emu, _ = in_process()
    async with emu:
        assert not emu.listening
        for i in range(200):
            data = await run_task(emu, DEV, {"prompt": f"cycle {i}", "seed": i})
            assert data["status"] == "created"
            await emu.advance(0.05)
            status, body = await call(emu, "GET", f"/api/v3/predictions/{data['id']}/result")
            assert status == 200
            assert body["data"]["status"] == "completed"
        answer = await emu.handle("GET", body["data"]["outputs"][0])
        assert answer.headers["Content-Type"] == "image/png"
        assert parse_png(answer.body)[:2] == (1024, 1024)
        stats = emu.stats()
        assert (stats.tasks_created, stats.polls_total, stats.tasks_completed) == (200, 200, 200)
        assert stats.requests_total == 401


async def test_handle_answers_exactly_what_the_socket_answers() -> None:
    config = EmulatorConfig(clock=ManualClock(), latency=LatencyProfile.fast(), api_key="right")
    requests: list[tuple[str, str, dict[str, str], bytes]] = [
        ("GET", "/api/v3/balance", {"Authorization": "Bearer right"}, b""),
        ("GET", "/api/v3/balance", {}, b""),
        ("GET", "/api/v3/models", {"Authorization": "Bearer right"}, b""),
        ("GET", f"/api/v3/predictions/{'0' * 32}/result", {"Authorization": "Bearer right"}, b""),
        (
            "POST",
            f"/api/v3/{DEV}",
            {"Authorization": "Bearer right"},
            b'{"prompt": "x", "num_images": 9}',
        ),
        ("POST", f"/api/v3/{DEV}", {"Authorization": "Bearer right"}, b"[1]"),
        ("POST", "/api/v3/predictions/abc", {"Authorization": "Bearer right"}, b"{}"),
        ("DELETE", "/api/v3/balance", {"Authorization": "Bearer right"}, b""),
        ("GET", "/nowhere", {}, b""),
        ("POST", "/api/v3/model/price", {"Authorization": "Bearer right"}, b'{"model_id": "a/b"}'),
    ]
    async with Emulator(config) as emu, aiohttp.ClientSession() as s:
        for method, path, headers, body in requests:
            async with s.request(method, emu.base_url + path, headers=headers, data=body) as r:
                over_http = (r.status, r.headers.get("Content-Type"), await r.read())
            answer = await emu.handle(method, path, headers, body)
            in_process = (answer.status, answer.headers.get("Content-Type"), answer.body)
            assert in_process == over_http, (method, path)
            assert answer.status != 200 or path.endswith(("balance", "models"))
        assert emu.stats().tasks_created == 0


async def test_resets_raise_before_or_after_the_request_was_processed() -> None:
    emu, _ = in_process()
    async with emu:
        emu.force_fault("reset_before")
        with pytest.raises(ResetBeforeRequest) as before:
            await call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "lost early"})
        assert not before.value.request_processed
        assert isinstance(before.value, ConnectionResetError)
        assert emu.stats().tasks_created == 0
        emu.force_fault("reset_after")
        with pytest.raises(ResetAfterRequest) as after:
            await call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "lost late"})
        assert after.value.request_processed
        assert emu.stats().tasks_created == 1  # the answer was lost, the task is billed
        task_id = next(iter(emu.stats().tasks))
        emu.force_fault("reset", on="poll")
        with pytest.raises(EmulatedDisconnect):
            await call(emu, "GET", f"/api/v3/predictions/{task_id}/result")
        assert emu.stats().faults == {"reset": {"before": 1, "after": 1, "poll": 1}}


async def test_other_faults_come_back_as_answers() -> None:
    emu, _ = in_process(seed=2)
    async with emu:
        emu.force_fault("malformed")
        answer = await emu.handle("POST", f"/api/v3/{DEV}", KEY, b'{"prompt": "cut"}')
        assert answer.status == 200
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(answer.body)
        emu.force_fault("server_error_after", times=3)
        statuses = set()
        for i in range(3):
            answer = await emu.handle("POST", f"/api/v3/{DEV}", KEY, b'{"prompt": "x%d"}' % i)
            statuses.add(answer.status)
        assert statuses <= {500, 502, 503}
        assert emu.stats().tasks_created == 4


async def test_a_stall_holds_the_answer_on_the_emulators_clock_and_survives_a_cancel() -> None:
    emu, _ = in_process(stall_s=30.0)
    async with emu:
        emu.force_fault("stall_after")
        held = asyncio.ensure_future(call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "slow"}))
        await until(lambda: emu.stats().tasks_created == 1)
        await emu.advance(29)
        assert not held.done()
        await emu.advance(1)
        status, body = await held
        assert status == 200
        assert body["data"]["id"] in emu.stats().tasks
        # The client gives up during a stall before creation: the server goes on anyway.
        emu.force_fault("stall_before")
        gone = asyncio.ensure_future(call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "left"}))
        await until(lambda: emu.stats().submits_received == 2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert emu.stats().tasks_created == 1
        await emu.advance(30)
        await until(lambda: emu.stats().tasks_created == 2)
        assert emu.stats().tasks_per_prompt["left"] == 1


async def test_closing_answers_a_held_request() -> None:
    emu, _ = in_process()
    async with emu:
        held = asyncio.ensure_future(
            emu.handle(
                "POST",
                f"/api/v3/{DEV}",
                KEY,
                b'{"prompt": "sync [latency:60000]", "enable_sync_mode": true}',
            )
        )
        await until(lambda: emu.stats().tasks_created == 1)
    answer = await held
    assert answer.status == 503


async def test_in_process_urls_use_the_invalid_base_or_the_host_given() -> None:
    emu, _ = in_process()
    assert emu.base_url == IN_PROCESS_BASE_URL == "http://emulator.invalid"
    with pytest.raises(RuntimeError, match="not started"):
        await emu.handle("GET", "/api/v3/balance", KEY)
    with pytest.raises(RuntimeError, match="port=None"):
        _ = emu.port
    async with emu:
        data = await run_task(emu, DEV, {"prompt": "u"})
        assert data["urls"]["get"].startswith("http://emulator.invalid/api/v3/predictions/")
        answer = await emu.handle(
            "GET", f"/api/v3/predictions/{data['id']}", {**KEY, "Host": "api.test:81"}
        )
        assert msgspec.json.decode(answer.body)["data"]["urls"]["get"].startswith(
            "http://api.test:81/"
        )
        # An absolute URL works as the target, its host that of the answer's URLs.
        status, body = await call(emu, "GET", f"http://other.test/api/v3/predictions/{data['id']}")
        assert status == 200
        assert body["data"]["urls"]["get"].startswith("http://other.test/")
        head = await emu.handle("HEAD", "/api/v3/balance", KEY)
        assert (head.status, head.body) == (200, b"")
        assert head.headers["content-type"] == "application/json"  # any case
        assert "EmulatedResponse(status=200" in repr(head)
    assert "emulator.invalid" in repr(emu)


async def test_uploads_and_downloads_work_in_process() -> None:
    emu, _ = in_process()
    async with emu:
        payload = b"\x89PNG not really" * 50
        boundary = "b0undary"
        multipart = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="my photo.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = await emu.handle(
            "POST",
            "/api/v3/media/upload/binary",
            {**KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            multipart,
        )
        assert answer.status == 200, answer.body
        data = msgspec.json.decode(answer.body)["data"]
        assert (data["filename"], data["size"], data["type"]) == (
            "my_photo.png",
            len(payload),
            "image",
        )
        fetched = await emu.handle("GET", data["download_url"])
        assert (fetched.status, fetched.body) == (200, payload)
        # The ticket flow: announce, PUT (no key), then use it as an input.
        status, ticket = await call(
            emu,
            "POST",
            "/api/v3/media/uploads",
            {"filename": "a.txt", "size": 3, "content_type": "text/plain"},
        )
        assert status == 200
        upload = ticket["data"]["upload"]
        put = await emu.handle("PUT", upload["url"], upload["headers"], b"abc")
        assert put.status == 200
        assert (await emu.handle("GET", ticket["data"]["download_url"])).body == b"abc"
        task = await run_task(emu, DEV, {"prompt": "edit", "image": data["download_url"]})
        await emu.advance(1)
        record = emu.task(task["id"])
        assert record is not None
        assert record.status == "completed"  # its own upload URL resolves
        assert emu.stats().media_requests_with_auth == 0


async def test_a_body_over_the_limit_is_413() -> None:
    emu, _ = in_process(max_upload_bytes=10)
    async with emu:
        answer = await emu.handle("POST", f"/api/v3/{PRO}", KEY, b" " * (17 * 1024 * 1024))
        assert answer.status == 413
        assert isinstance(answer, EmulatedResponse)


@pytest.mark.parametrize("echo", [False, True])
async def test_polls_carry_the_tasks_inputs_only_when_asked(echo: bool) -> None:
    emu, _ = in_process(echo_input=echo)
    async with emu:
        data = await run_task(emu, PRO, {"prompt": "an echo", "seed": 7})
        assert data["input"] == {"prompt": "an echo", "seed": 7}  # a submit's answer always
        status, answer = await call(emu, "GET", f"/api/v3/predictions/{data['id']}/result")
    assert status == 200
    if echo:
        assert answer["data"]["input"] == {"prompt": "an echo", "seed": 7}
    else:
        assert "input" not in answer["data"]
