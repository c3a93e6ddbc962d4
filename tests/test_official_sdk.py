"""The official ``wavespeed`` SDK, unmodified, against the emulator.

The emulator must serve any client, the official one included: its ``run`` (submit, poll),
``run_no_throw``, ``get_result``, sync mode and its two-step ``upload``. The SDK is
synchronous (``requests``), so each call runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from wavespeed_async.emulator import Emulator

wavespeed = pytest.importorskip("wavespeed")

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"
T = TypeVar("T")


async def _in_thread(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _sdk(emulator: Emulator) -> Any:
    return wavespeed.Client(api_key="official-sdk-key", base_url=emulator.base_url)


async def test_official_run_and_get_result(emulator: Emulator) -> None:
    sdk = _sdk(emulator)
    out = await _in_thread(
        lambda: sdk.run(DEV, {"prompt": "a red fox"}, timeout=30, poll_interval=0.01)
    )
    assert len(out["outputs"]) == 1
    assert out["outputs"][0].startswith(f"{emulator.base_url}/media/outputs/")
    done = await _in_thread(
        lambda: sdk.run_no_throw(DEV, {"prompt": "a blue fox"}, timeout=30, poll_interval=0.01)
    )
    assert done["status"] == "completed"
    answer = await _in_thread(lambda: sdk.get_result(done["task_id"]))
    assert answer["code"] == 200
    assert answer["data"]["id"] == done["task_id"]
    assert answer["data"]["status"] == "completed"
    assert answer["data"]["outputs"] == done["outputs"]


async def test_official_sync_mode(emulator: Emulator) -> None:
    sdk = _sdk(emulator)
    out = await _in_thread(
        lambda: sdk.run(DEV, {"prompt": "in one request"}, timeout=30, enable_sync_mode=True)
    )
    assert len(out["outputs"]) == 1
    stats = emulator.stats()
    assert (stats.submits_received, stats.polls_total) == (1, 0)


async def test_official_upload_then_edit(emulator: Emulator, tmp_path: Path) -> None:
    src = tmp_path / "cottage.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 4096)
    sdk = _sdk(emulator)
    url = await _in_thread(lambda: sdk.upload(str(src)))
    assert url.startswith(f"{emulator.base_url}/media/uploads/")
    with src.open("rb") as f:
        url2 = await _in_thread(lambda: sdk.upload(f))
    assert url2 != url
    out = await _in_thread(
        lambda: sdk.run(DEV, {"prompt": "paint it", "image": url}, timeout=30, poll_interval=0.01)
    )
    assert len(out["outputs"]) == 1
    stats = emulator.stats()
    assert stats.uploads == 2
    # The SDK sends the storage PUT without its key, as the real storage host expects.
    assert stats.media_requests_with_auth == 0
