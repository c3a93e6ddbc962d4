"""Client(transport=...): the emulator in process with no socket, and any small transport."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import (
    Client,
    ConnectError,
    HTTPRequest,
    HTTPResponse,
    HTTPTransport,
    SubmissionOutcomeUnknown,
    Timeouts,
    TransportError,
    ValidationError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
DEV = "wavespeed-ai/flux-kontext-dev"


def _no_sockets(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a socket was opened")


def in_process(emu: Emulator, **kwargs: Any) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        transport=emu.transport(),
        poll=fast_poll(),
        retry=fast_retry(),
        **kwargs,
    )


async def test_two_hundred_jobs_run_through_the_emulator_transport_with_no_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast())
    async with Emulator(config, port=None) as emu:
        monkeypatch.setattr(socket, "socket", _no_sockets)
        monkeypatch.setattr(socket, "create_connection", _no_sockets)
        async with in_process(emu) as client:
            image = await client.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, filename="in.png")
            inputs = [
                (DEV, {"prompt": f"edit {i}", "image": image}) if i % 4 == 0 else
                (PRO, {"prompt": f"job {i}"})
                for i in range(200)
            ]  # fmt: skip
            async with client.run_many(None, inputs, concurrency=50) as results:
                done = [r async for r in results]
            first = next(r for r in done if r.ok)
            assert first.prediction is not None
            [saved] = await client.download(first.prediction, tmp_path)
        assert len(done) == 200 and all(r.ok for r in done)
        assert len({r.id for r in done}) == 200
        assert emu.stats().tasks_created == 200
        assert saved.suffix == ".png" and saved.read_bytes().startswith(b"\x89PNG")


async def test_faults_come_out_of_the_transport_as_a_socket_would_show_them() -> None:
    async with Emulator(EmulatorConfig(seed=4, latency=LatencyProfile.fast()), port=None) as emu:
        async with in_process(emu, timeouts=Timeouts(request_s=0.3)) as client:
            # Reset before the request was read: nothing was sent, so it is re-sent.
            emu.force_fault("reset_before")
            assert (await client.run(PRO, {"prompt": "re-sent"})).ok
            assert emu.stats().tasks_created == 1
            # Reset after: the answer is lost and a task exists. Never re-sent.
            emu.force_fault("reset_after")
            with pytest.raises(SubmissionOutcomeUnknown) as info:
                await client.submit(PRO, {"prompt": "lost"})
            assert info.value.cause_kind == "reset"
            assert emu.stats().tasks_created == 2
            # A stalled poll ends at its deadline (request_s) and is retried.
            pred = await client.submit(PRO, {"prompt": "stalled poll"})
            emu.force_fault("stall", on="poll")
            assert (await client.wait(pred)).ok
            assert client._api is not None and client._api.retries >= 1


async def test_the_emulator_transport_serves_only_the_emulator() -> None:
    async with Emulator(EmulatorConfig(seed=5), port=None) as emu:
        async with Client(CANARY_KEY, transport=emu.transport(), retry=fast_retry()) as client:
            with pytest.raises(ConnectError, match=r"base_url=emu\.base_url"):
                await client.balance()


class Scripted:
    """A transport of a dozen lines: answers every request from a table."""

    def __init__(self) -> None:
        self.seen: list[HTTPRequest] = []
        self.closed = False

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        self.seen.append(request)
        if request.url.endswith("/api/v3/balance"):
            body = b'{"code": 200, "message": "success", "data": {"balance": 12.5}}'
            return HTTPResponse(200, {"Content-Type": "application/json"}, body)
        raise TransportError("nothing scripted", method=request.method, url=request.url)

    async def aclose(self) -> None:
        self.closed = True


async def test_any_object_with_send_and_aclose_is_a_transport() -> None:
    transport = Scripted()
    assert isinstance(transport, HTTPTransport)
    client = Client(CANARY_KEY, base_url="https://api.example", transport=transport)
    async with client:
        assert await client.balance() == 12.5
        with pytest.raises(TransportError, match="nothing scripted"):
            await client.get_result("a" * 32)
    assert transport.closed  # the Client closes what it was given
    [first, *_] = transport.seen
    assert first.url == "https://api.example/api/v3/balance"
    assert first.headers["Authorization"] == f"Bearer {CANARY_KEY}"
    assert CANARY_KEY not in repr(first) + repr(client)


def test_an_object_that_is_no_transport_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="HTTPTransport") as info:
        Client(CANARY_KEY, transport=object())  # type: ignore[arg-type]
    assert info.value.field == "transport"
