"""What a wake-up of the event loop costs: ``python -m benchmarks._wakeups``.

Instruction counts (``benchmarks._instructions``) see the user-space instructions a client
executes, nothing else. Each time a client's event loop has nothing to do, it blocks in
``epoll_wait``; being woken again costs CPU time of its own: the kernel's, and on a virtual
machine the caches and TLBs refilled after the CPU ran something else meanwhile. Two
clients that execute the same instructions can differ in CPU time by how often they block.

First this measures the cost on this machine: an event loop that does nothing but
``asyncio.sleep(d)``, for each length ``d``, reports its process's CPU time per wake-up
(``time.process_time``; a loop that never blocks costs a few µs per pass).

With ``--clients``, it then runs those clients (``ours``, ``floor-<interval s>``) against
the emulator, each in a process of its own as the full benchmark does
(``benchmarks._run.run_scenario``), at ``--concurrency``, and reports each one's CPU time
per request beside the times its process blocked per request (``sleeps/request``, its
voluntary context switches).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks._emulator import EmulatorProcess
from benchmarks._metrics import RunFigures
from benchmarks._run import ROOT, SEED, run_scenario, scenario_named

__all__ = ["ClientRow", "main", "measure_clients", "render", "wakeup_cost"]

#: Sleep lengths measured by default (seconds). The selector rounds a timeout up to whole
#: milliseconds, so a shorter sleep still blocks for about one.
LENGTHS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def wakeup_cost(sleep_s: float, count: int) -> float:
    """CPU seconds of this process per ``asyncio.sleep(sleep_s)`` of an otherwise idle loop."""

    async def sleeps() -> float:
        await asyncio.sleep(0)  # the loop's own start is not measured
        start = time.process_time()
        for _ in range(count):
            await asyncio.sleep(sleep_s)
        return (time.process_time() - start) / count

    return asyncio.run(sleeps())


@dataclass(frozen=True)
class ClientRow:
    """One client's run at one concurrency."""

    client: str
    concurrency: int
    figures: RunFigures


def measure_clients(
    clients: Sequence[str], *, jobs: int, warmup: int, concurrency: int, latency: str
) -> list[ClientRow]:
    """Run each client once against one emulator; CPU, sleeps and requests of each."""
    scenarios = [scenario_named(c) for c in clients]
    rows = []
    with EmulatorProcess(latency=latency, seed=SEED, cwd=ROOT) as emu:
        for client, scenario in zip(clients, scenarios, strict=True):
            figures = run_scenario(
                emu,
                scenario,
                jobs=jobs,
                warmup=warmup,
                concurrency=concurrency,
                time_limit_s=600.0,
                tag=f"wakeups {client} {concurrency} {time.time()}",
            )
            rows.append(ClientRow(client, concurrency, figures))
    return rows


def render(costs: Sequence[tuple[float, float]], rows: Sequence[ClientRow]) -> str:
    """The wake-up costs (sleep length, CPU seconds per wake-up), then the clients' runs."""
    lines: list[str] = []
    if costs:
        lines += [
            "| asyncio.sleep | CPU µs per wake-up |",
            "|--:|--:|",
            *(f"| {s * 1000:g} ms | {cpu * 1e6:.0f} |" for s, cpu in costs),
        ]
    if rows:
        if lines:
            lines.append("")
        lines += [
            "| client | concurrency | CPU ms/job | CPU µs/request | sleeps/request "
            "| requests/job | detect p50 ms |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for r in rows:
            f = r.figures
            sleeps = "n/a" if f.sleeps_per_request is None else f"{f.sleeps_per_request:.2f}"
            lines.append(
                f"| {r.client} | {r.concurrency} | {f.cpu_ms_per_job:.2f} "
                f"| {f.cpu_us_per_request:.0f} | {sleeps} "
                f"| {f.emulator.requests_per_job:.2f} | {f.emulator.detect_p50_ms:.0f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._wakeups", description=__doc__)
    p.add_argument(
        "--lengths",
        type=float,
        nargs="*",
        default=list(LENGTHS),
        help="sleep lengths (s, above 0; none: measure only the clients)",
    )
    p.add_argument(
        "--seconds", type=float, default=1.0, help="about how long to sleep at each length"
    )
    p.add_argument(
        "--clients",
        nargs="*",
        default=[],
        help="ours, ours-events, ours-stream and/or floor-<interval s>",
    )
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--latency", default="0.5", help="the emulator's --latency")
    args = p.parse_args(argv)
    for client in args.clients:
        try:
            scenario_named(client)  # a bad name fails before anything runs
        except ValueError as exc:
            p.error(str(exc))
    bad = [s for s in args.lengths if not (math.isfinite(s) and s > 0)]
    if bad:
        p.error(f"--lengths: every sleep length must be above 0 s, got {bad[0]!r}")
    costs = [(s, wakeup_cost(s, max(5, min(5000, int(args.seconds / s))))) for s in args.lengths]
    rows = measure_clients(
        args.clients,
        jobs=args.jobs,
        warmup=args.warmup,
        concurrency=args.concurrency,
        latency=args.latency,
    )
    print(render(costs, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
