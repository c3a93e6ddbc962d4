"""What the batch's journal costs the event loop: jobs per second and the loop's lag.

Run ``python benchmarks/journal_loop.py`` (or ``python -m benchmarks.journal_loop``). It
runs the ``batch`` command in this process, as the console script would (planning, the
journal in a real file with ``synchronous=FULL``, the manifest), against an emulator served
with no socket whose tasks take no time, so that the journal's writes are most of the work.
A ticker task runs beside the batch, asking to wake every millisecond; how late it wakes
is the loop's lag (anything that holds the loop, an fsync made on it for one, shows there).

It prints, per round: jobs per second over the run (submit to saved, planning excluded)
and over the whole command, the loop's worst and 99th-percentile lag, and how many commits
the journal made for its calls (where the journal groups them). ``--dir`` puts the journal
on the disk to measure (default: a temporary folder); ``--commit-ms`` makes each commit
take that much longer, as on a slow disk or a network filesystem (the calling thread
sleeps, as it would wait for the fsync).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

import wavespeed_async
from wavespeed_async import Client, FlowLimits, PollConfig
from wavespeed_async.cli import _parser, _runner
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile
from wavespeed_async.jobs.journal import Journal

MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"
TICK_S = 0.001
#: Every job the same: the emulator renders its image once (its cache) and serves it after,
#: so that its own work on the loop stays small beside the journal's.
LINE = '{"prompt": "a lighthouse", "seed": 7}\n'


@dataclass
class Round:
    jobs: int
    run_s: float
    command_s: float
    lags_ms: list[float]
    commits: int | None
    calls: int | None

    @property
    def worst_ms(self) -> float:
        return max(self.lags_ms, default=0.0)

    @property
    def p99_ms(self) -> float:
        if len(self.lags_ms) < 2:
            return self.worst_ms
        return statistics.quantiles(self.lags_ms, n=100)[98]


_WRITES = ("INSERT", "UPDATE", "DELETE")


class SlowCommits:
    """A SQLite connection whose commits take ``delay_s`` longer (a slow disk's fsync)."""

    def __init__(self, conn: sqlite3.Connection, delay_s: float) -> None:
        self._conn = conn
        self._delay_s = delay_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _commits(self, sql: str) -> bool:
        head = sql.lstrip().upper()
        return head.startswith("COMMIT") or (
            head.startswith(_WRITES) and not self._conn.in_transaction
        )

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cur = self._conn.execute(sql, *args)
        if self._commits(sql):
            time.sleep(self._delay_s)
        return cur

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cur = self._conn.executemany(sql, *args)
        if self._commits(sql):
            time.sleep(self._delay_s)
        return cur


@asynccontextmanager
async def _instant_client(target: Any, **kwargs: Any) -> AsyncIterator[Client]:
    """The batch's Client: an emulator in this process whose tasks take no time."""
    config = EmulatorConfig(seed=1, latency=LatencyProfile.fast().scaled(0.0))
    async with Emulator(config, port=None) as emu:
        poll = PollConfig(expected_duration_s=0.001, min_interval_s=0.001, max_interval_s=0.005)
        limits = kwargs.get("limits") or FlowLimits(max_in_flight=None, max_tasks_per_minute=None)
        async with Client(
            "bench", base_url=emu.base_url, transport=emu.transport(), poll=poll, limits=limits
        ) as client:
            yield client


def one_round(folder: Path, jobs: int, concurrency: int, commit_s: float = 0.0) -> Round:
    """Run one batch of ``jobs`` jobs in ``folder``; its figures."""
    jobs_file = folder / "jobs.jsonl"
    jobs_file.write_text(LINE * jobs)
    out = folder / "out"
    lags: list[float] = []
    seen: dict[str, Any] = {}
    original_run = _runner.Batch.run

    async def run_with_ticker(batch: Any) -> None:
        async def tick() -> None:
            while True:
                due = time.perf_counter() + TICK_S
                await anyio.sleep(TICK_S)
                lags.append(max(0.0, time.perf_counter() - due) * 1000)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await original_run(batch)
            tg.cancel_scope.cancel()
        seen["run_s"] = time.perf_counter() - started
        seen["journal"] = batch.journal

    args = _parser().parse_args(
        ["batch", str(jobs_file), "-o", str(out), "--model", MODEL, "--emulator", "--quiet",
         "--no-gallery", "--concurrency", str(concurrency)]
    )  # fmt: skip
    plain_open = Journal.__dict__["open"]

    def slow_open(cls: type[Journal], path: Any) -> Journal:
        journal: Journal = plain_open.__func__(cls, path)
        journal._conn = SlowCommits(journal._conn, commit_s)  # type: ignore[assignment]
        return journal

    with ExitStack() as patches:
        patches.enter_context(patch.object(_runner, "open_client", _instant_client))
        patches.enter_context(patch.object(_runner.Batch, "run", run_with_ticker))
        if commit_s > 0:
            patches.enter_context(patch.object(Journal, "open", classmethod(slow_open)))
        started = time.perf_counter()
        code = args.func(args)
        command_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"the batch exited with {code}")
    journal = seen["journal"]
    return Round(
        jobs=jobs,
        run_s=seen["run_s"],
        command_s=command_s,
        lags_ms=lags,
        commits=getattr(journal, "commits", None),
        calls=getattr(journal, "calls", None),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000, help="jobs per batch (default 2000)")
    p.add_argument("--concurrency", type=int, default=64, help="--concurrency (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="batches to run (default 3)")
    p.add_argument("--dir", type=Path, default=None, help="where the journal goes")
    p.add_argument(
        "--commit-ms", type=float, default=0.0, help="extra time per commit (a slow disk)"
    )
    a = p.parse_args(argv)
    print(f"wavespeed_async from {Path(wavespeed_async.__file__).parent}")
    print(
        f"{a.jobs} jobs, --concurrency {a.concurrency}, instant tasks, in process, "
        f"+{a.commit_ms:g} ms per commit"
    )
    print("round  jobs/s(run)  jobs/s(command)  lag worst ms  lag p99 ms  commits/calls")
    for n in range(a.rounds):
        with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
            r = one_round(Path(tmp), a.jobs, a.concurrency, a.commit_ms / 1000)
        grouped = "-" if r.commits is None else f"{r.commits}/{r.calls}"
        print(
            f"{n + 1:>5}  {r.jobs / r.run_s:>11.0f}  {r.jobs / r.command_s:>15.0f}  "
            f"{r.worst_ms:>12.1f}  {r.p99_ms:>10.2f}  {grouped:>13}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
