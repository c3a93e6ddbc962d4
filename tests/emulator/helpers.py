"""Shared helpers of the emulator tests (plain aiohttp, never the project's client)."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import msgspec

from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile, ManualClock

DEV: Final = "wavespeed-ai/flux-kontext-dev"
PRO: Final = "wavespeed-ai/flux-kontext-pro/text-to-image"


def manual(**kwargs: Any) -> tuple[Emulator, ManualClock]:
    """An emulator on a ManualClock with fast latencies."""
    clock = ManualClock()
    kwargs.setdefault("latency", LatencyProfile.fast())
    return Emulator(EmulatorConfig(clock=clock, **kwargs)), clock


async def submit(
    s: aiohttp.ClientSession,
    emu: Emulator,
    body: Any,
    model: str = DEV,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with s.post(f"{emu.base_url}/api/v3/{model}", json=body, params=params) as r:
        return r.status, await r.json()


async def get(s: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with s.get(url) as r:
        return r.status, await r.json()


async def result(s: aiohttp.ClientSession, emu: Emulator, task_id: str) -> dict[str, Any]:
    status, body = await get(s, f"{emu.base_url}/api/v3/predictions/{task_id}/result")
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


def parse_png(data: bytes) -> tuple[int, int, bytes]:
    """Parse an 8-bit RGB PNG by hand: ``(width, height, raw scanlines)``."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    width = height = -1
    idat = b""
    seen_end = False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + chunk) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert (depth, colour, interlace) == (8, 2, 0)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            seen_end = True
            break
        pos += 12 + length
    assert seen_end
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (in small real-time steps) until the server has caught up with a request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting for the emulator"
        await asyncio.sleep(0.002)


KEY: Final = {"Authorization": "Bearer test-key"}
VIDEO: Final = "wavespeed-ai/wan-2.2/t2v-480p"
LORA: Final = "wavespeed-ai/flux-dev-lora"
UPSCALER: Final = "wavespeed-ai/image-upscaler"


def in_process(**kwargs: Any) -> tuple[Emulator, ManualClock]:
    """An emulator with no socket (``port=None``) on a ManualClock with fast latencies."""
    clock = ManualClock()
    kwargs.setdefault("latency", LatencyProfile.fast())
    return Emulator(EmulatorConfig(clock=clock, **kwargs), port=None), clock


async def call(
    emu: Emulator,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A JSON request through ``emu.handle`` (no socket): ``(status, decoded body)``."""
    raw = b"" if body is None else msgspec.json.encode(body)
    all_headers = {**KEY, "Content-Type": "application/json", **(headers or {})}
    answer = await emu.handle(method, path, all_headers, raw)
    return answer.status, msgspec.json.decode(answer.body) if answer.body else None


async def run_task(emu: Emulator, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit through ``emu.handle``; returns the prediction ``data`` (asserts a 200)."""
    status, answer = await call(emu, "POST", f"/api/v3/{model}", body)
    assert status == 200, answer
    data: dict[str, Any] = answer["data"]
    return data
