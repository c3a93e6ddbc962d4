"""Client 1: ``wavespeed_async`` through ``Client.run_many``, with its default polling."""

from __future__ import annotations

import anyio

from benchmarks._common import MODEL, Checkpoint, PhaseOutcome, Stopwatch, WorkerSpec, prompts
from wavespeed_async import Client, FlowLimits

__all__ = ["run"]


async def _batch(client: Client, spec: WorkerSpec, n: int, tag: str) -> PhaseOutcome:
    watch = Stopwatch()
    ok = failed = 0
    timed_out = True
    with anyio.move_on_after(spec.time_limit_s):
        async with client.run_many(MODEL, prompts(tag, n), concurrency=spec.concurrency) as rs:
            async for r in rs:
                if r.ok:
                    ok += 1
                else:
                    failed += 1
        timed_out = False
    return watch.stop(jobs=n, ok=ok, failed=failed, timed_out=timed_out)


async def _main(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    limits = FlowLimits(
        max_in_flight=spec.max_in_flight,
        max_polls_per_s=spec.max_polls_per_s,
        max_connections=spec.max_connections,
    )
    async with Client(api_key="benchmark", base_url=spec.base_url, limits=limits) as client:
        warm = await _batch(client, spec, spec.warmup, f"{spec.tag} warm-up")
        # Blocks the loop on purpose: nothing runs between the two batches.
        checkpoint(warm)
        measured = await _batch(client, spec, spec.jobs, spec.tag)
    return warm, measured


def run(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    """Warm up, report, then run the measured batch with the same Client."""
    return anyio.run(_main, spec, checkpoint)
