"""Shared fixtures: an in-process emulator on 127.0.0.1 and a Client pointed at it.

Two lanes: the default one (``python -m pytest``) runs unit and in-process tests and starts
no process; end-to-end tests (subprocess CLIs, real Redis, Ray, the browser, doc blocks)
carry ``@pytest.mark.e2e`` and run with ``python -m pytest -m e2e``. A test of the default
lane that starts a process fails, saying so.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.services import RedisServer, machine_state, redis_server
from wavespeed_async import Client, PollConfig, RetryConfig
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

# No time limit per generated example: on a loaded 2-core machine one example of a correct
# test can take longer than Hypothesis' default 200 ms and fail the test as "too slow".
# The examples themselves (their count, their data) are unchanged.
settings.register_profile("wavespeed", deadline=None)
settings.load_profile("wavespeed")

#: A key that must never show up in a repr, a log line or an error.
CANARY_KEY = "wsk-canary-9f8e7d6c5b4a39281706"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test whose setup failed gets a line on the machine's state in its report.

    A fixture that cannot start a service often ran out of something the test did not use
    itself.
    """
    report: pytest.TestReport = yield
    if report.failed and report.when == "setup":
        report.sections.append(("machine state", machine_state()))
    return report


def pytest_configure(config: pytest.Config) -> None:
    """Without ``-m``, the default lane: everything not marked e2e."""
    if not config.option.markexpr:
        config.option.markexpr = "not e2e"


@pytest.fixture(autouse=True)
def _default_lane_starts_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refuse(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            f"this test starts a process ({args!r:.80}): end-to-end tests carry "
            "@pytest.mark.e2e and run in their own lane (python -m pytest -m e2e)"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fast_poll() -> PollConfig:
    """Polling tuned to the emulator's millisecond latencies, so tests run quickly."""
    return PollConfig(expected_duration_s=0.03, min_interval_s=0.005, max_interval_s=0.05)


def fast_retry() -> RetryConfig:
    return RetryConfig(backoff_base_s=0.001, max_backoff_s=0.01, max_retry_after_s=0.05)


class NullShare:
    """A share backend that limits nothing and keeps nothing: the methods every share has."""

    connections = 0

    def bind(self, limits: Any, **kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def acquire_slot(self, token: object) -> None:
        pass

    def release_slot(self, token: object) -> None:
        pass

    async def acquire_start(self) -> object:
        return None

    def start_sent(self, handle: object) -> None:
        pass

    async def acquire_poll(self) -> None:
        pass

    def start_cooldown(self, seconds: float) -> None:
        pass

    def publish(self, prediction: Any) -> None:
        pass

    async def stored_result(self, task_id: str) -> Any:
        return None


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorConfig(seed=7, latency=LatencyProfile.fast())) as emu:
        yield emu


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[Client]:
    """A Client of ``emulator`` through its in-process transport: no socket of its own."""
    async with Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        transport=emulator.transport(),
        poll=fast_poll(),
        retry=fast_retry(),
        seed=1,
    ) as c:
        yield c


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A real redis-server on a random 127.0.0.1 port, stopped by pid after the test."""
    with redis_server() as server:
        yield server
