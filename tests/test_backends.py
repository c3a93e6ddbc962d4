"""Which event loops the client runs on: asyncio only, and a typed error elsewhere."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll
from wavespeed_async import AsyncioRequiredError, Client, ClientClosedError, WaveSpeedError
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile


def test_the_error_is_typed_and_still_a_runtime_error() -> None:
    assert issubclass(AsyncioRequiredError, WaveSpeedError)
    assert issubclass(AsyncioRequiredError, RuntimeError)
    # Not "closed": creating a new Client would not help.
    assert not issubclass(AsyncioRequiredError, ClientClosedError)


def test_under_trio_the_client_says_it_needs_asyncio() -> None:
    pytest.importorskip("trio")

    async def main() -> None:
        async with Client(CANARY_KEY, base_url="http://127.0.0.1:9"):
            pass

    with pytest.raises(AsyncioRequiredError) as info:
        anyio.run(main, backend="trio")
    text = str(info.value)
    assert "asyncio only" in text and "anyio.run(main" in text and "trio" in text


def test_under_trio_every_call_raises_the_same_error() -> None:
    pytest.importorskip("trio")
    client = Client(CANARY_KEY, base_url="http://127.0.0.1:9")

    async def main() -> list[str]:
        seen = []
        for call in (
            lambda: client.balance(),
            lambda: client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a"}),
            lambda: client.get_result("0" * 32),
        ):
            try:
                await call()
            except AsyncioRequiredError as exc:
                seen.append(type(exc).__name__)
        try:
            client.wait_many(["0" * 32])
        except AsyncioRequiredError as exc:
            seen.append(type(exc).__name__)
        return seen

    assert anyio.run(main, backend="trio") == ["AsyncioRequiredError"] * 4


def test_the_built_in_emulator_under_trio_says_the_same() -> None:
    pytest.importorskip("trio")

    async def main() -> None:
        async with Emulator():
            pass

    with pytest.raises(AsyncioRequiredError, match="asyncio only"):
        anyio.run(main, backend="trio")


@pytest.mark.anyio
async def test_under_anyio_on_asyncio_the_client_works(client: Client) -> None:
    assert await client.balance() > 0


def test_on_uvloop_the_client_runs_over_real_sockets() -> None:
    pytest.importorskip("uvloop")

    async def main() -> tuple[str, bool, int]:
        loop = type(asyncio.get_running_loop()).__module__
        async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:
            async with Client(CANARY_KEY, base_url=emu.base_url, poll=fast_poll()) as client:
                pred = await client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a fox"})
                return loop, pred.ok, emu.stats().tasks_created

    loop, ok, created = anyio.run(main, backend_options={"use_uvloop": True})
    assert loop.startswith("uvloop") and ok and created == 1
