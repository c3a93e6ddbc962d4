"""Each fault kind, before and after the task exists: what the client does, per the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import Client, SubmissionOutcomeUnknown, Timeouts
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = pytest.mark.anyio

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(seed=21, latency=LatencyProfile.fast(), stall_s=3.0)
    async with Emulator(config) as e:
        yield e


def client(emu: Emulator) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        # Stalls (3 s) outlast the read timeout; a normal answer under load never does.
        timeouts=Timeouts(request_s=1.0, connect_s=1.0),
    )


# (fault, what the client must do): "ok" when a re-send is provably safe, else "unknown".
SUBMIT_FAULTS = [
    ("rate_limit", "ok"),
    ("reset_before", "unknown"),  # the client cannot tell a reset before from one after
    ("reset_after", "unknown"),
    ("server_error_after", "unknown"),
    ("malformed", "unknown"),
    ("stall_before", "unknown"),
    ("stall_after", "unknown"),
]


@pytest.mark.parametrize(("kind", "expected"), SUBMIT_FAULTS)
async def test_a_submit_fault_never_creates_a_second_task(
    emu: Emulator, kind: str, expected: str
) -> None:
    emu.force_fault(kind, on="submit", times=1)
    prompt = f"fault {kind}"
    async with client(emu) as c:
        if expected == "ok":
            pred = await c.run(PRO, {"prompt": prompt})
            assert pred.ok
        else:
            with pytest.raises(SubmissionOutcomeUnknown) as info:
                await c.run(PRO, {"prompt": prompt})
            assert info.value.input == {"prompt": prompt}
    stats = emu.stats()
    assert stats.submits_received == (2 if expected == "ok" else 1)
    assert stats.tasks_per_prompt.get(prompt, 0) <= 1
    assert stats.duplicate_prompts == []
    phase = "after" if kind.endswith("after") or kind == "malformed" else "before"
    base = kind.removesuffix("_before").removesuffix("_after")
    assert stats.faults[base][phase] == 1
    if phase == "after":
        assert stats.tasks_per_prompt[prompt] == 1  # the task exists: the error said so


async def test_a_server_error_before_creation_is_resent_only_with_retry_after(
    emu: Emulator,
) -> None:
    # The emulator picks 500, 502 or 503 (only 503 carries Retry-After, so only it is safe).
    ok = 0
    unknown_statuses: list[int | None] = []
    async with client(emu) as c:
        for i in range(12):
            emu.force_fault("server_error_before", on="submit", times=1)
            try:
                await c.run(PRO, {"prompt": f"before {i}"})
                ok += 1
            except SubmissionOutcomeUnknown as exc:
                unknown_statuses.append(exc.status)
    stats = emu.stats()
    assert stats.duplicate_prompts == []
    assert stats.tasks_created == ok
    assert ok > 0
    assert unknown_statuses
    assert set(unknown_statuses) <= {500, 502}


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "reset", "malformed", "stall"])
async def test_a_poll_fault_is_retried_transparently(emu: Emulator, kind: str) -> None:
    emu.force_fault(kind, on="poll", times=2)
    async with client(emu) as c:
        pred = await c.run(PRO, {"prompt": f"poll {kind}"})
    assert pred.ok
    stats = emu.stats()
    assert stats.tasks_created == 1
    assert sum(stats.faults[kind].values()) == 2
