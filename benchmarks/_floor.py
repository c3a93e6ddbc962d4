"""Client 3: the floor. A minimal hand-written aiohttp loop, as short as such code gets.

One session, a semaphore for the concurrency, ``asyncio.gather`` over every job, the
standard ``json`` module, and a fixed poll interval (the first poll one interval after the
submit). No retries, no typed results, no flow control: whatever a client adds on top of
this is its overhead.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from benchmarks._common import MODEL, Checkpoint, PhaseOutcome, Stopwatch, WorkerSpec, prompts

__all__ = ["run"]

_TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


async def _batch(
    session: aiohttp.ClientSession, spec: WorkerSpec, n: int, tag: str
) -> PhaseOutcome:
    interval = spec.poll_interval_s or 1.0
    submit_url = f"{spec.base_url}/api/v3/{MODEL}"
    headers = {"Authorization": "Bearer benchmark", "Content-Type": "application/json"}
    sem = asyncio.Semaphore(spec.concurrency)

    async def one(inp: dict[str, str]) -> bool:
        async with sem:
            async with session.post(submit_url, data=json.dumps(inp), headers=headers) as resp:
                body = json.loads(await resp.read())
            if resp.status != 200 or body.get("code") != 200:
                return False
            result_url = f"{spec.base_url}/api/v3/predictions/{body['data']['id']}/result"
            while True:
                await asyncio.sleep(interval)
                async with session.get(result_url, headers=headers) as resp:
                    body = json.loads(await resp.read())
                status = body["data"]["status"] if resp.status == 200 else None
                if status in _TERMINAL:
                    return bool(status == "completed")

    watch = Stopwatch()
    outcomes: list[bool | BaseException] = []
    timed_out = False
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(one(p) for p in prompts(tag, n)), return_exceptions=True),
            spec.time_limit_s,
        )
    except asyncio.TimeoutError:
        timed_out = True
    ok = sum(1 for o in outcomes if o is True)
    return watch.stop(jobs=n, ok=ok, failed=len(outcomes) - ok, timed_out=timed_out)


async def _main(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    connector = aiohttp.TCPConnector(limit=spec.connection_limit)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = await _batch(session, spec, spec.warmup, f"{spec.tag} warm-up")
        checkpoint(warm)  # blocks the loop on purpose: nothing runs between the batches
        measured = await _batch(session, spec, spec.jobs, spec.tag)
    return warm, measured


def run(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    """Warm up, report, then run the measured batch on the same session."""
    return asyncio.run(_main(spec, checkpoint))
