"""The event-stream route streams a task to its end from the worker that did not submit it."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.services import RedisServer, free_port
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=8, latency=LatencyProfile.fast())) as emu:
        yield emu


@pytest.fixture
async def app_url(emulator: Emulator, redis: RedisServer) -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WS_BASE_URL": emulator.base_url,
        "WS_SHARE": redis.url,
        "WS_PUBLIC_URL": url,
        "WS_SECRET": emulator.webhook_secret,
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "tests.redis._events_app:app", "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    proc = await anyio.open_process(cmd, cwd=ROOT, env=env, stdout=None, stderr=None)
    try:
        pids: set[int] = set()
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            with anyio.fail_after(60):
                while len(pids) < 2:  # ready when both workers have answered
                    try:
                        async with http.get(f"{url}/pid") as r:
                            pids.add((await r.json())["pid"])
                    except aiohttp.ClientConnectionError:
                        await anyio.sleep(0.1)
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        with anyio.move_on_after(20):
            await proc.wait()
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        await proc.aclose()


async def test_the_other_worker_streams_the_task_to_its_end(
    emulator: Emulator, app_url: str
) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{app_url}/submit", params={"prompt": "far [latency:1500]"}) as r:
            assert r.status == 200, await r.text()
            submitted = await r.json()
        task_id, submitter = submitted["id"], submitted["pid"]
        events: list[tuple[str, dict[str, Any]]] = []
        streamer = None
        with anyio.fail_after(60):
            while streamer is None:
                headers = {"x-avoid-pid": str(submitter), "accept": "text/event-stream"}
                async with http.get(
                    f"{app_url}/wavespeed/tasks/{task_id}/events", headers=headers
                ) as resp:
                    if resp.status == 409:  # the submitting worker: try the other one
                        continue
                    assert resp.status == 200, await resp.text()
                    streamer = int(resp.headers["x-pid"])
                    kind = ""
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("event: "):
                            kind = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            events.append((kind, json.loads(line.removeprefix("data: "))))
    assert streamer != submitter
    kinds = [k for k, _ in events]
    assert kinds[0] == "waiting" and kinds[-1] == "completed", kinds
    # Seen by its own polls, or woken by the webhook delivery to either worker (the share).
    assert set(kinds) <= {"waiting", "status", "delivered", "completed"}
    assert events[0][1]["status"] in ("created", "processing")
    record = emulator.task(task_id)
    assert record is not None and record.status == "completed"
    assert events[-1][1]["task_id"] == task_id
    assert events[-1][1]["outputs"] == [f"{emulator.base_url}/media/outputs/{task_id}/0.png"]
