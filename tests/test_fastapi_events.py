"""The event-stream route: a task's events as Server-Sent Events, over real HTTP.

Uvicorn runs in this process, the emulator in process.
"""

# No `from __future__ import annotations`: FastAPI resolves handler annotations at runtime.

import json
from typing import Any

import aiohttp
import anyio
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.test_fastapi import emulator, serve_app
from wavespeed_async.emulator import Emulator
from wavespeed_async.fastapi import WaveSpeed
from wavespeed_async.fastapi.events import encode_event

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"


def make_ws(emu: Emulator, **kwargs: Any) -> WaveSpeed:
    return WaveSpeed(
        api_key=CANARY_KEY,
        base_url=emu.base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        **kwargs,
    )


def build_app(ws: WaveSpeed) -> FastAPI:
    app = FastAPI(lifespan=ws.lifespan)
    app.include_router(ws.router)

    @app.post("/submit")
    async def submit(prompt: str) -> dict[str, Any]:
        pred = await ws.client.submit(DEV, {"prompt": prompt})
        return {"id": pred.id}

    @app.post("/generate")
    async def generate(request: Request, prompt: str) -> dict[str, Any]:
        pred = await ws.run(request, DEV, {"prompt": prompt})
        return {"id": pred.id}

    return app


async def read_events(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    """Every SSE message of the response, as (event, data), until the server ends it."""
    assert resp.status == 200, await resp.text()
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    events: list[tuple[str, dict[str, Any]]] = []
    kind, data = "", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and kind:
            events.append((kind, json.loads(data)))
            kind, data = "", ""
    return events


async def test_a_task_no_one_waits_for_is_followed_by_the_route_to_its_end() -> None:
    async with emulator() as emu:
        ws = make_ws(emu)
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/submit", params={"prompt": "a fox [latency:200]"}) as r:
                task_id = (await r.json())["id"]
            with anyio.fail_after(10):
                async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as resp:
                    events = await read_events(resp)
            assert ws.events is not None and ws.events.open_streams == 0
    kinds = [k for k, _ in events]
    assert kinds[-1] == "completed" and "processing" in [d.get("status") for _, d in events]
    assert all(d["task_id"] == task_id for _, d in events)
    assert all(d["kind"] == k for k, d in events)
    record = emu.task(task_id)
    assert record is not None
    assert events[-1][1]["outputs"] and events[-1][1]["outputs"] == [
        f"{emu.base_url}/media/outputs/{task_id}/{i}.png" for i in range(record.num_images)
    ]


async def test_the_stream_of_a_task_a_handler_waits_for_shows_that_wait() -> None:
    async with emulator() as emu:
        ws = make_ws(emu)
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            answer: dict[str, Any] = {}

            async def generate() -> None:
                async with http.post(f"{url}/generate", params={"prompt": "w [latency:300]"}) as r:
                    answer.update(await r.json())

            async with anyio.create_task_group() as tg:
                tg.start_soon(generate)
                with anyio.fail_after(5):
                    while not emu.stats().tasks:
                        await anyio.sleep(0.01)
                (task_id,) = emu.stats().tasks
                await anyio.sleep(0.05)  # the handler's wait runs
                async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as resp:
                    events = await read_events(resp)
    assert answer["id"] == task_id
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "completed", kinds
    assert "waiting" not in kinds  # the handler's wait was followed, not a second one
    assert emu.stats().polls_per_task[task_id] < 40


async def test_when_the_waiting_handler_leaves_the_route_takes_over() -> None:
    async with emulator() as emu:
        ws = make_ws(emu)
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:

                    async def generate_and_leave() -> None:
                        with anyio.move_on_after(0.3):  # the browser of /generate leaves
                            await http.post(f"{url}/generate", params={"prompt": "l [latency:800]"})

                    tg.start_soon(generate_and_leave)
                    while not emu.stats().tasks:
                        await anyio.sleep(0.01)
                    (task_id,) = emu.stats().tasks
                    async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as resp:
                        events = await read_events(resp)
    kinds = [k for k, _ in events]
    assert kinds[-1] == "completed", kinds
    assert "abandoned" not in kinds and "waiting" in kinds


async def test_a_failed_task_ends_its_stream_with_the_error() -> None:
    async with emulator() as emu:
        ws = make_ws(emu)
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/submit", params={"prompt": "no [fail:1200]"}) as r:
                task_id = (await r.json())["id"]
            async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as resp:
                events = await read_events(resp)
    kind, data = events[-1]
    assert kind == "failed" and data["status"] == "failed" and data["code"] == 1200
    assert data["error"] and data["error_type"] == "TaskFailedError"


async def test_unknown_tasks_bad_ids_and_too_many_streams_are_refused() -> None:
    async with emulator() as emu:
        ws = make_ws(emu, max_event_streams=1)
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            async with http.get(f"{url}/wavespeed/tasks/{'0' * 32}/events") as resp:
                assert resp.status == 404
            async with http.get(f"{url}/wavespeed/tasks/..%2Fx/events") as resp:
                assert resp.status == 404
            async with http.post(f"{url}/submit", params={"prompt": "x [latency:5000]"}) as r:
                task_id = (await r.json())["id"]
            async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as first:
                assert first.status == 200
                await first.content.readline()  # the first event: the stream is open
                async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as second:
                    assert second.status == 503 and second.headers["retry-after"] == "5"
            with anyio.fail_after(5):
                while ws.events is not None and ws.events.open_streams:
                    await anyio.sleep(0.01)  # the browser left: its stream ended


async def test_the_route_takes_dependencies_and_can_be_left_out() -> None:
    def only_with_a_token(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer t":
            raise HTTPException(status_code=401)

    async with emulator() as emu:
        ws = make_ws(emu, events_dependencies=[Depends(only_with_a_token)])
        async with serve_app(build_app(ws), ws) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/submit", params={"prompt": "dep"}) as r:
                task_id = (await r.json())["id"]
            path = f"{url}/wavespeed/tasks/{task_id}/events"
            async with http.get(path) as resp:
                assert resp.status == 401
            async with http.get(path, headers={"authorization": "Bearer t"}) as resp:
                assert (await read_events(resp))[-1][0] == "completed"
        off = make_ws(emu, events_path=None)
        assert off.events is None
        async with serve_app(build_app(off), off) as url, aiohttp.ClientSession() as http:
            async with http.get(f"{url}/wavespeed/tasks/{task_id}/events") as resp:
                assert resp.status == 404


def test_each_event_is_one_message_named_by_its_kind() -> None:
    from wavespeed_async import StatusEvent

    raw = encode_event(StatusEvent(at=1.0, time=2.0, task_id="t1", status="processing"), 3)
    head, kind, data, end = raw.split(b"\n", 3)
    assert head == b"id: 3" and kind == b"event: status" and end == b"\n"
    assert json.loads(data.removeprefix(b"data: "))["status"] == "processing"
