"""Each log line about a task carries its id as structured data (``record.task_id``)."""

from __future__ import annotations

import logging
import re

import anyio
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import Client, Prediction
from wavespeed_async.emulator import Emulator, EmulatorConfig, FaultRates, LatencyProfile

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"
_ID = re.compile(r"\b[0-9a-f]{32}\b")


async def test_every_log_line_that_names_a_task_carries_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = EmulatorConfig(
        seed=4,
        latency=LatencyProfile.fast(),
        submit_faults=FaultRates(rate_limit=0.1, server_error_before=0.1),
        poll_faults=FaultRates(server_error_before=0.2, reset_before=0.1),
    )

    def broken_hook(pred: Prediction) -> None:
        raise RuntimeError("a bug in the hook")

    caplog.set_level(logging.DEBUG, logger="wavespeed_async")
    async with Emulator(config) as emu:
        emu.force_fault("rate_limit", on="poll", times=1)
        async with Client(
            CANARY_KEY,
            base_url=emu.base_url,
            transport=emu.transport(),
            poll=fast_poll(),
            retry=fast_retry(),
            on_task_created=broken_hook,
        ) as client:
            inputs = [{"prompt": f"p{i} [latency:60]"} for i in range(12)]
            async with client.run_many(DEV, inputs, concurrency=4) as run:
                results = [r async for r in run]
            pred = await client.submit(DEV, {"prompt": "pushed [latency:5000]"})
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.wait, pred)
                await anyio.sleep(0.02)
                client.deliver(Prediction(id=pred.id, model=DEV, status="completed"))
            # A batch left early names the tasks it leaves behind.
            slow = [{"prompt": f"s{i} [latency:5000]"} for i in range(3)]
            async with client.run_many(DEV, slow) as run:
                while run.progress.running < 3:
                    await anyio.sleep(0.01)
    assert sum(r.ok for r in results) >= 1
    named = 0
    for record in caplog.records:
        if record.name.startswith("wavespeed_async.emulator"):
            continue  # the emulator's own lines are the server's, not the client's
        ids = set(_ID.findall(record.getMessage()))
        if not ids:
            continue
        named += 1
        carried = {getattr(record, "task_id", None), *getattr(record, "task_ids", ())}
        assert ids <= carried, (record.getMessage(), carried)
    assert named >= 12  # at least each task's "created" line
