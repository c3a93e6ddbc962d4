"""Deterministic placeholder images: 8-bit RGB PNGs written with zlib and struct only."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from wavespeed_async.emulator._catalogue import UPSCALE_SIZES
from wavespeed_async.emulator._schema import parse_size

__all__ = ["ASPECT_SIZES", "DEFAULT_SIZE", "ImageCache", "output_size", "render_png"]

DEFAULT_SIZE: Final = (1024, 1024)

#: Output size of each ``aspect_ratio`` (about one megapixel, multiples of 16).
ASPECT_SIZES: Final[Mapping[str, tuple[int, int]]] = {
    "21:9": (1568, 672),
    "16:9": (1344, 768),
    "4:3": (1152, 896),
    "3:2": (1216, 832),
    "1:1": (1024, 1024),
    "2:3": (832, 1216),
    "3:4": (896, 1152),
    "9:16": (768, 1344),
    "9:21": (672, 1568),
}

_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_MAX_SIDE: Final = 4096


def output_size(body: Mapping[str, object]) -> tuple[int, int]:
    """The output size a request asks for.

    From ``size`` ("W*H"), ``aspect_ratio`` or an upscaler's ``target_resolution`` (scaled
    down to at most 4096 per side).
    """
    size = body.get("size")
    if isinstance(size, str):
        parsed = parse_size(size)
        if parsed is not None and all(1 <= d <= _MAX_SIDE for d in parsed):
            return parsed
    ratio = body.get("aspect_ratio")
    if isinstance(ratio, str) and ratio in ASPECT_SIZES:
        return ASPECT_SIZES[ratio]
    target = body.get("target_resolution")
    if isinstance(target, str) and target in UPSCALE_SIZES:
        width, height = UPSCALE_SIZES[target]
        shrink = max(width, height) / _MAX_SIDE
        if shrink > 1:
            width, height = round(width / shrink), round(height / shrink)
        return width, height
    return DEFAULT_SIZE


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def render_png(prompt: str, seed: int, index: int, width: int, height: int) -> bytes:
    """A diagonal two-colour gradient whose colours derive from ``(prompt, seed, index)``."""
    digest = hashlib.blake2b(f"{prompt}\x00{seed}\x00{index}".encode(), digest_size=16).digest()
    c0 = digest[0:3]
    c1 = digest[3:6]
    # One period of a triangle wave across the width; each row is this row rotated, which
    # draws diagonal bands and costs one bytes slice per row.
    base = bytearray(width * 3)
    for x in range(width):
        t = abs(2.0 * x / width - 1.0)
        base[3 * x] = int(c0[0] + (c1[0] - c0[0]) * t)
        base[3 * x + 1] = int(c0[1] + (c1[1] - c0[1]) * t)
        base[3 * x + 2] = int(c0[2] + (c1[2] - c0[2]) * t)
    doubled = bytes(base) * 2
    step = digest[6] % 3 + 1
    rows = []
    for y in range(height):
        off = ((y * step) % width) * 3
        rows.append(b"\x00" + doubled[off : off + width * 3])
    raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


class ImageCache:
    """A byte-bounded LRU of rendered PNGs keyed by what determines them."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._items: OrderedDict[tuple[str, int, int, int, int], bytes] = OrderedDict()
        self.renders = 0

    def get(self, prompt: str, seed: int, index: int, width: int, height: int) -> bytes:
        key = (prompt, seed, index, width, height)
        png = self._items.get(key)
        if png is not None:
            self._items.move_to_end(key)
            return png
        png = render_png(prompt, seed, index, width, height)
        self.renders += 1
        if len(png) <= self._max:
            self._items[key] = png
            self._bytes += len(png)
            while self._bytes > self._max:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return png

    def __len__(self) -> int:
        return len(self._items)
