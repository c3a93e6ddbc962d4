"""Instructions per job under cachegrind: ``python -m benchmarks._instructions``.

CPU time on a shared VM moves by tens of percent between identical runs; the instructions a
client executes do not. This runs each client (``ours``, or ``floor-<interval s>``) in a
fresh interpreter (``benchmarks._worker``) under ``valgrind --tool=cachegrind
--cache-sim=no`` against the emulator, which runs natively in a process of its own. Each
client runs twice, with the same warm-up and a measured batch of N jobs, then of M jobs: the
difference of the two totals over ``M - N`` is its instructions per job (the interpreter's
start, the imports and the warm-up cancel out), and the emulator's request counters over
the measured batches give its requests per job the same way.

The floor makes more requests per job the shorter its poll interval; with several floor
intervals, a least-squares line through their ``(requests/job, instructions/job)`` points
gives the floor's cost at ``ours``' requests per job, and the ratio of the two.

Counts are of user-space instructions of the client's process only (no kernel, no
emulator). Python runs tens of times slower under valgrind, so a client at high
concurrency may become CPU-bound and batch more work per loop pass than it would natively.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from benchmarks._common import PROTOCOL_PREFIX, WorkerReport, WorkerSpec
from benchmarks._emulator import EmulatorProcess

__all__ = ["Count", "Measurement", "floor_line", "main", "measure"]

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


@dataclass(frozen=True)
class Count:
    """One run of a client under cachegrind."""

    jobs: int
    instructions: int
    #: Requests the emulator received during the measured batch.
    requests: int


@dataclass(frozen=True)
class Measurement:
    """A client's two runs, and what they give per job."""

    client: str
    small: Count
    large: Count

    @property
    def per_job(self) -> float:
        jobs = self.large.jobs - self.small.jobs
        return (self.large.instructions - self.small.instructions) / jobs

    @property
    def requests_per_job(self) -> float:
        return (self.large.requests - self.small.requests) / (self.large.jobs - self.small.jobs)


def _instructions(out_file: Path) -> int:
    """The total ``Ir`` of a cachegrind output file (its ``summary:`` line)."""
    for line in out_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out_file}: no summary line")


#: ``ours`` and who listens to its events (``WorkerSpec.events``).
_OURS: Final = {"ours": "", "ours-events": "listener", "ours-stream": "stream"}


def _spec(client: str, base_url: str, jobs: int, warmup: int, concurrency: int) -> WorkerSpec:
    kind, _, interval = client.partition("-")
    ours = client in _OURS
    if not ours and (kind != "floor" or not interval):
        raise ValueError(
            f"client: {client!r}; allowed: ours, ours-events, ours-stream, floor-<interval s>"
        )
    return WorkerSpec(
        client="ours" if ours else "floor",
        base_url=base_url,
        jobs=jobs,
        warmup=warmup,
        concurrency=concurrency,
        tag=f"instructions {client} {jobs}",
        poll_interval_s=None if ours else float(interval),
        events=_OURS.get(client, ""),
    )


def _run_once(
    emu: EmulatorProcess, spec: WorkerSpec, out_file: Path, valgrind: str, limit_s: float
) -> Count:
    """One client process under cachegrind: warm-up, reset the emulator, measured batch."""
    cmd = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        f"--cachegrind-out-file={out_file}",
        sys.executable,
        "-m",
        "benchmarks._worker",
        msgspec.json.encode(spec).decode(),
    ]
    # The same string hashes in every run: dict and set layouts do not move the counts.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(  # noqa: S603 - valgrind running our own interpreter and module
        cmd,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # valgrind's banner and summary
        text=True,
    )
    watchdog = threading.Timer(limit_s, proc.kill)  # this one process, by handle
    watchdog.daemon = True
    watchdog.start()
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        report: WorkerReport | None = None
        for line in proc.stdout:
            if not line.startswith(PROTOCOL_PREFIX):
                continue
            kind, _, payload = line[len(PROTOCOL_PREFIX) :].partition(" ")
            if kind == "warm":
                emu.reset()
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif kind == "done":
                report = msgspec.json.decode(payload, type=WorkerReport)
        code = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    if code != 0 or report is None:
        raise RuntimeError(f"{spec.client} ({spec.jobs} jobs) ended with exit code {code}")
    measured = report.measured
    if measured.timed_out or measured.ok != measured.jobs:
        raise RuntimeError(
            f"{spec.client} ({spec.jobs} jobs): {measured.ok} ok, {measured.failed} failed, "
            f"timed out: {measured.timed_out}"
        )
    return Count(spec.jobs, _instructions(out_file), emu.stats().requests_total)


def measure(
    clients: Sequence[str],
    *,
    sizes: tuple[int, int],
    warmup: int,
    concurrency: int,
    latency: str,
    valgrind: str = "valgrind",
    limit_s: float = 1800.0,
    log: bool = True,
    keep: Path | None = None,
) -> list[Measurement]:
    """Count each client at both batch sizes against one emulator.

    ``keep``: a folder to leave cachegrind's output files in (``cg.<client>.<jobs>``), for
    ``cg_annotate`` or ``cg_annotate --diff`` of the two batches.
    """
    small, large = sizes
    if not 0 < small < large:
        raise ValueError(f"sizes: {sizes!r}; allowed: 0 < N < M")
    out: list[Measurement] = []
    with (
        tempfile.TemporaryDirectory(prefix="ws-cachegrind-") as tmp,
        EmulatorProcess(latency=latency, seed=SEED, cwd=ROOT) as emu,
    ):
        for client in clients:
            counts = []
            for n in (small, large):
                spec = _spec(client, emu.base_url, n, warmup, concurrency)
                folder = Path(tmp) if keep is None else keep
                count = _run_once(emu, spec, folder / f"cg.{client}.{n}", valgrind, limit_s)
                if log:
                    sys.stderr.write(
                        f"[instructions] {client} {n} jobs: {count.instructions:,} "
                        f"instructions, {count.requests} requests\n"
                    )
                counts.append(count)
            out.append(Measurement(client, counts[0], counts[1]))
    return out


def floor_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """``(intercept, slope)`` of the least-squares line through ``(x, y)`` points."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


def render(results: Sequence[Measurement]) -> str:
    lines = [
        "| client | instructions/job | requests/job | instructions/request |",
        "|---|--:|--:|--:|",
    ]
    lines.extend(
        f"| {m.client} | {m.per_job / 1e6:.3f} M | {m.requests_per_job:.2f} | "
        f"{m.per_job / m.requests_per_job / 1e3:.0f} k |"
        for m in results
    )
    line = floor_line(
        [(m.requests_per_job, m.per_job) for m in results if m.client.startswith("floor")]
    )
    ours = [m for m in results if m.client == "ours"]
    if line is not None and ours:
        a, b = line
        at = ours[0].requests_per_job
        floor_at = a + b * at
        lines.append("")
        lines.append(
            f"floor line: {a / 1e6:.3f} M + {b / 1e3:.0f} k per request; at "
            f"{at:.2f} requests/job {floor_at / 1e6:.3f} M; ours / floor "
            f"{ours[0].per_job / floor_at:.3f}x"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._instructions")
    p.add_argument("clients", nargs="*", default=["ours"], help="ours and/or floor-<interval s>")
    p.add_argument("--sizes", type=int, nargs=2, default=(100, 300), metavar=("N", "M"))
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--latency", default="0.5", help="the emulator's --latency (0: instant)")
    p.add_argument("--valgrind", default=shutil.which("valgrind") or "valgrind")
    p.add_argument(
        "--keep", type=Path, default=None, help="a folder to keep cachegrind's output files in"
    )
    args = p.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    results = measure(
        args.clients,
        sizes=(args.sizes[0], args.sizes[1]),
        warmup=args.warmup,
        concurrency=args.concurrency,
        latency=args.latency,
        valgrind=args.valgrind,
        keep=args.keep,
    )
    sys.stdout.write(
        f"concurrency {args.concurrency}, emulator --latency {args.latency}, warm-up "
        f"{args.warmup} jobs, batches of {args.sizes[0]} and {args.sizes[1]} jobs\n\n"
    )
    sys.stdout.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
