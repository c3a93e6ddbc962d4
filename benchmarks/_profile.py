"""Profile one client's measured batch: ``python -m benchmarks._profile [ours|floor]``.

Starts the emulator in its own process, runs the client in this process (warm-up batch
first, not profiled), and profiles the measured batch with cProfile. Prints the event-loop
passes (``epoll.poll`` calls), the function calls, the CPU time per job and per request,
and the top functions by cumulative and by self time. ``--out FILE`` writes the same text
to a file (``benchmarks/results/profile-*.txt`` are made this way).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import selectors
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import PhaseOutcome, WorkerSpec
from benchmarks._emulator import EmulatorProcess
from benchmarks._worker import Runner

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _passes(stats: pstats.Stats) -> int:
    """How many times the event loop polled its selector (one per loop pass)."""
    entries = stats.stats  # type: ignore[attr-defined]
    return sum(
        ncalls
        for (_file, _line, name), (_cc, ncalls, *_rest) in entries.items()
        if name == "<method 'poll' of 'select.epoll' objects>"
    )


class _SleepCounter:
    """Counts the event loop's selector calls that may block (the loop goes to sleep)."""

    def __init__(self) -> None:
        self.sleeps = 0
        self.passes = 0
        self._original = selectors.EpollSelector.select

    def __enter__(self) -> _SleepCounter:
        original = self._original

        def select(
            sel: selectors.EpollSelector, timeout: float | None = None
        ) -> list[tuple[selectors.SelectorKey, int]]:
            self.passes += 1
            if timeout is None or timeout > 0:
                self.sleeps += 1
            return original(sel, timeout)

        selectors.EpollSelector.select = select  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        selectors.EpollSelector.select = self._original  # type: ignore[method-assign]


def profile(
    client: str,
    *,
    jobs: int,
    warmup: int,
    concurrency: int,
    latency: str,
    dump: Path | None = None,
) -> str:
    """Run ``client`` against a fresh emulator and return the profile as text."""
    profiler = cProfile.Profile()
    with EmulatorProcess(latency=latency, seed=7, cwd=ROOT) as emu:
        spec = WorkerSpec(
            client="ours" if client == "ours" else "floor",
            base_url=emu.base_url,
            jobs=jobs,
            warmup=warmup,
            concurrency=concurrency,
            tag=f"profile {client}",
            poll_interval_s=None if client == "ours" else float(client.split("-")[1]),
        )
        cpu_at: list[float] = []

        def checkpoint(_warm: PhaseOutcome) -> None:
            emu.reset()
            cpu_at.append(_cpu())
            profiler.enable()

        run: Runner
        if client == "ours":
            from benchmarks import _ours

            run = _ours.run
        else:
            from benchmarks import _floor

            run = _floor.run
        counter = _SleepCounter()

        def checkpoint_counted(warm: PhaseOutcome) -> None:
            checkpoint(warm)
            counter.passes = counter.sleeps = 0

        with counter:
            _warm, measured = run(spec, checkpoint_counted)
        profiler.disable()
        cpu = _cpu() - cpu_at[0]
        requests = emu.stats().requests_total
    if dump is not None:
        profiler.dump_stats(dump)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    passes = _passes(stats)
    head = (
        f"client: {client}; {jobs} jobs at concurrency {concurrency}, emulator --latency "
        f"{latency}, after a warm-up of {warmup} jobs; ok {measured.ok}/{measured.jobs}\n"
        f"wall {measured.wall_s:.2f} s; CPU under the profiler {cpu:.2f} s "
        f"({cpu / jobs * 1e3:.2f} ms/job, {cpu / max(requests, 1) * 1e6:.0f} us/request; "
        f"cProfile inflates these: compare ratios)\n"
        f"requests {requests} ({requests / jobs:.2f}/job); event-loop passes (epoll.poll "
        f"calls) {passes} ({passes / jobs:.1f}/job); function calls {stats.total_calls} "  # type: ignore[attr-defined]
        f"({stats.total_calls / jobs:.0f}/job)\n"  # type: ignore[attr-defined]
        f"loop passes that could block (selector timeout > 0) {counter.sleeps} "
        f"({counter.sleeps / jobs:.1f}/job) of {counter.passes}\n\n"
    )
    text.write(head)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(35)
    return text.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._profile")
    p.add_argument("client", nargs="?", default="ours", help="ours, or floor-<interval s>")
    p.add_argument("--jobs", type=int, default=600)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--latency", default="0.5")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--dump", type=Path, default=None, help="also write the raw cProfile stats")
    args = p.parse_args(argv)
    text = profile(
        args.client,
        jobs=args.jobs,
        warmup=args.warmup,
        concurrency=args.concurrency,
        latency=args.latency,
        dump=args.dump,
    )
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
