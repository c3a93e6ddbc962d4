"""Generated PNGs: sizes, aspect ratios, determinism, base64 output, the LRU cache."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from wavespeed_async.emulator import ASPECT_SIZES
from wavespeed_async.emulator._png import ImageCache, render_png

from .helpers import DEV, PRO, manual, parse_png, result, submit

pytestmark = pytest.mark.anyio


async def _download(url: str) -> bytes:
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as r:
        assert r.status == 200
        assert r.content_type == "image/png"
        return await r.read()


async def _outputs(
    s: aiohttp.ClientSession, body: dict[str, object], model: str = DEV
) -> list[str]:
    emu, _ = manual()
    async with emu:
        status, answer = await submit(s, emu, body, model=model)
        assert status == 200, answer
        await emu.advance(1)
        data = await result(s, emu, answer["data"]["id"])
        assert data["status"] == "completed"
        outputs: list[str] = data["outputs"]
        if body.get("enable_base64_output"):
            return outputs
        return [base64.b64encode(await _download(u)).decode() for u in outputs]


def _png(b64: str) -> tuple[int, int, bytes]:
    return parse_png(base64.b64decode(b64, validate=True))


@pytest.mark.parametrize(("size", "expected"), [(None, (1024, 1024)), ("768*512", (768, 512))])
async def test_size(
    session: aiohttp.ClientSession, size: str | None, expected: tuple[int, int]
) -> None:
    body: dict[str, object] = {"prompt": "size"}
    if size is not None:
        body["size"] = size
    (out,) = await _outputs(session, body)
    width, height, _ = _png(out)
    assert (width, height) == expected


@pytest.mark.parametrize("ratio", list(ASPECT_SIZES))
async def test_aspect_ratio(session: aiohttp.ClientSession, ratio: str) -> None:
    (out,) = await _outputs(session, {"prompt": "ratio", "aspect_ratio": ratio}, model=PRO)
    width, height, _ = _png(out)
    assert (width, height) == ASPECT_SIZES[ratio]
    w, h = (int(x) for x in ratio.split(":"))
    assert abs(width / height - w / h) < 0.1
    assert 0.85e6 < width * height < 1.2e6


async def test_deterministic_per_prompt_and_seed(session: aiohttp.ClientSession) -> None:
    a1 = await _outputs(session, {"prompt": "red fox", "seed": 42, "size": "512*512"})
    a2 = await _outputs(session, {"prompt": "red fox", "seed": 42, "size": "512*512"})
    b = await _outputs(session, {"prompt": "blue fox", "seed": 42, "size": "512*512"})
    c = await _outputs(session, {"prompt": "red fox", "seed": 43, "size": "512*512"})
    assert a1 == a2
    assert _png(a1[0])[2] != _png(b[0])[2]
    assert _png(a1[0])[2] != _png(c[0])[2]


async def test_num_images_and_base64(session: aiohttp.ClientSession) -> None:
    outs = await _outputs(
        session,
        {"prompt": "four", "num_images": 4, "size": "512*640", "enable_base64_output": True},
    )
    assert len(outs) == 4
    assert all(not o.startswith("data:") for o in outs)
    decoded = [_png(o) for o in outs]
    assert {(w, h) for w, h, _ in decoded} == {(512, 640)}
    assert len({raw for _, _, raw in decoded}) == 4


async def test_missing_outputs_are_404(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": "x"})
        tid = body["data"]["id"]
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{emu.base_url}/media/outputs/{tid}/0.png") as r:
                assert r.status == 404  # not finished yet
            await emu.advance(1)
            for name in ("1.png", "x.png"):
                async with anonymous.get(f"{emu.base_url}/media/outputs/{tid}/{name}") as r:
                    assert r.status == 404
            async with anonymous.get(f"{emu.base_url}/media/outputs/{tid}/0.png") as r:
                assert r.status == 200


def test_image_cache_is_bounded() -> None:
    one = len(render_png("p", 1, 0, 256, 256))
    cache = ImageCache(max_bytes=3 * one + 10)
    for seed in range(10):
        cache.get("p", seed, 0, 256, 256)
    assert len(cache) <= 3
    assert cache.renders == 10
    cache.get("p", 9, 0, 256, 256)
    assert cache.renders == 10
