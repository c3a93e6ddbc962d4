"""Where each client's CPU time goes, sampled natively: ``python -m benchmarks._sampled``.

Instruction counts (``benchmarks._instructions``) run a client tens of times slower than
natively; cProfile (``benchmarks._profile``) adds its own cost to every Python call. This
samples the client's process as it runs in the full benchmark (``benchmarks._run``'s
``run_scenario``: same settings, warm-up left out), with ``perf record -e cpu-clock``
attached to it during the measured batch only. The samples count on-CPU time (user and
kernel) in every shared object (the interpreter, aiohttp's and msgspec's extensions, the
kernel) and every symbol in them.

Each client runs ``--rounds`` times, the clients interleaved; the report gives samples per
request (the emulator's request count), summed over the rounds, by shared object and by
symbol, with the first two clients' difference. A sample is one tick of ``--frequency``
per second of CPU time: at 999 Hz, a sample per request is about 1 ms of CPU per request.

Needs ``perf`` (linux-tools; ``--perf`` names another binary) allowed to sample a process
of the same user (``kernel.perf_event_paranoid`` at 2 or below).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._emulator import EmulatorProcess
from benchmarks._run import ROOT, SEED, run_scenario, scenario_named

__all__ = ["ClientSamples", "main", "parse_report", "perf_works", "render", "sample_clients"]

#: ``perf report --stdio -n --sort dso,sym``: percent, samples, shared object, [k]/[.], symbol.
_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[^\]]\]\s+(.+?)\s*$")


@dataclass
class ClientSamples:
    """One client's samples and requests, summed over its rounds."""

    client: str
    requests: int = 0
    jobs: int = 0
    #: The client's CPU time in the runs (user and system, its own timer), seconds.
    cpu_s: float = 0.0
    by_symbol: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(self.by_symbol.values())

    def by_object(self) -> Counter[str]:
        objects: Counter[str] = Counter()
        for (obj, _), n in self.by_symbol.items():
            objects[obj] += n
        return objects


def parse_report(text: str) -> Counter[tuple[str, str]]:
    """Samples per ``(shared object, symbol)`` from ``perf report --stdio -n --sort dso,sym``."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            counts[m.group(2), m.group(3)] += int(m.group(1))
    return counts


def perf_works(perf: str) -> str | None:
    """None if ``perf`` can sample a child process here, else why not."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(  # noqa: S603 - perf running our own interpreter
                [
                    *(perf, "record", "-q", "-e", "cpu-clock", "-o", f"{tmp}/p.data", "--"),
                    *(sys.executable, "-c", "sum(range(10**6))"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{perf}: {exc}"
    if done.returncode != 0:
        return f"{perf} record failed: {done.stderr.strip()[-300:]}"
    return None


@contextmanager
def _perf_attached(perf: str, pid: int, out: Path, frequency: int) -> Iterator[None]:
    """``perf record`` on process ``pid`` for as long as the context lasts.

    perf starts with its events off (``-D -1``) and turns them on when told through its
    control pipe; its answer on the other pipe says it samples, before the context is
    entered.
    """
    ctl_read, ctl_write = os.pipe()
    ack_read, ack_write = os.pipe()
    try:
        proc = subprocess.Popen(  # noqa: S603 - perf sampling our own worker
            [
                *(perf, "record", "-q", "-e", "cpu-clock", "-F", str(frequency), "-D", "-1"),
                *(f"--control=fd:{ctl_read},{ack_write}", "-p", str(pid), "-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(ctl_read, ack_write),
        )
    except OSError:
        os.close(ctl_write)
        os.close(ack_read)
        raise
    finally:
        os.close(ctl_read)
        os.close(ack_write)

    def stop() -> str:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        return str(err).strip()[-300:]

    # The pipes stay open until perf has ended: at the end of its control pipe perf stops
    # without writing its samples.
    with open(ctl_write, "wb", buffering=0) as ctl, open(ack_read, "rb", buffering=0) as ack:
        try:
            ctl.write(b"enable\n")
            answer = ack.read(4)
        except OSError:  # perf has ended: its end of the control pipe is closed
            answer = b""
        if answer != b"ack\n":
            raise RuntimeError(f"perf record did not start sampling process {pid}: {stop()}")
        try:
            yield
        finally:
            err = stop()
    if proc.returncode not in (0, -signal.SIGINT):
        raise RuntimeError(f"perf record ended with {proc.returncode}: {err}")


def _report(perf: str, data: Path) -> Counter[tuple[str, str]]:
    done = subprocess.run(  # noqa: S603 - perf reading its own file
        [perf, "report", "-i", str(data), "--stdio", "-n", "--sort", "dso,sym"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return parse_report(done.stdout)


def sample_clients(
    clients: Sequence[str],
    *,
    jobs: int,
    warmup: int,
    concurrency: int,
    latency: str,
    rounds: int,
    frequency: int,
    perf: str,
) -> list[ClientSamples]:
    """Run the clients ``rounds`` times, interleaved, each sampled during its measured batch.

    Returns their samples and requests summed over the rounds.
    """
    scenarios = [scenario_named(c) for c in clients]
    totals = [ClientSamples(c) for c in clients]
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(latency=latency, seed=SEED, cwd=ROOT) as emu,
    ):
        for round_ in range(rounds):
            for client, scenario, total in zip(clients, scenarios, totals, strict=True):
                data = Path(tmp) / f"perf.{round_}.{client}.data"

                def attached(pid: int, data: Path = data) -> AbstractContextManager[None]:
                    return _perf_attached(perf, pid, data, frequency)

                fig = run_scenario(
                    emu,
                    scenario,
                    jobs=jobs,
                    warmup=warmup,
                    concurrency=concurrency,
                    time_limit_s=600.0,
                    tag=f"sampled {client} {round_} {time.time()}",
                    around_measured=attached,
                )
                total.requests += fig.emulator.requests_total
                total.jobs += fig.jobs
                total.cpu_s += fig.cpu_s
                total.by_symbol.update(_report(perf, data))
    return totals


def _per_request(n: int, requests: int) -> str:
    return f"{n / max(1, requests):.4f}"


def render(results: Sequence[ClientSamples], frequency: int, top: int) -> str:
    """Samples per request by shared object, then the ``top`` symbols.

    The top symbols are those whose samples per request differ most between the first two
    clients (with one client, its largest).
    """
    names = " | ".join(r.client for r in results)
    bar = "--:|" * len(results)

    def row(label: str, cells: Iterable[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        f"| per request | {names} |",
        f"|---|{bar}",
        row("requests", (str(r.requests) for r in results)),
        row("CPU µs (timed)", (f"{1e6 * r.cpu_s / max(1, r.requests):.0f}" for r in results)),
        row(
            f"CPU µs (samples at {frequency} Hz)",
            (f"{1e6 * r.samples / frequency / max(1, r.requests):.0f}" for r in results),
        ),
        row("samples", (_per_request(r.samples, r.requests) for r in results)),
    ]
    objects = [(r.by_object(), r.requests) for r in results]
    ranked = sorted(
        set().union(*(c for c, _ in objects)),
        key=lambda o: -max(c[o] / max(1, n) for c, n in objects),
    )
    lines += ["", f"| samples per request, by shared object | {names} |", f"|---|{bar}"]
    for obj in ranked[:top]:
        lines.append(row(obj, (_per_request(c[obj], n) for c, n in objects)))

    def weight(key: tuple[str, str]) -> float:
        shares = [r.by_symbol[key] / max(1, r.requests) for r in results[:2]]
        return -abs(shares[0] - shares[1]) if len(shares) == 2 else -shares[0]

    symbols = sorted(set().union(*(r.by_symbol for r in results)), key=weight)
    heading = "difference of the first two" if len(results) > 1 else "largest"
    lines += ["", f"| symbol ({heading}) | object | {names} |", f"|---|---|{bar}"]
    for obj, sym in symbols[:top]:
        cells = (_per_request(r.by_symbol[obj, sym], r.requests) for r in results)
        lines.append(row(f"`{sym[:70]}` | {obj}", cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._sampled", description=__doc__)
    p.add_argument("clients", nargs="+", help="ours and/or floor-<interval s>")
    p.add_argument("--jobs", type=int, default=1500)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--latency", default="0.5", help="the emulator's --latency")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--frequency", type=int, default=999, help="samples per CPU second")
    p.add_argument("--top", type=int, default=25, help="rows of each table")
    p.add_argument("--perf", default=shutil.which("perf") or "perf")
    args = p.parse_args(argv)
    for client in args.clients:
        try:
            scenario_named(client)  # a bad name fails before anything runs
        except ValueError as exc:
            p.error(str(exc))
    for name in ("jobs", "rounds", "frequency", "top", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    why = perf_works(args.perf)
    if why is not None:
        p.error(f"--perf: cannot sample here ({why})")
    results = sample_clients(
        args.clients,
        jobs=args.jobs,
        warmup=args.warmup,
        concurrency=args.concurrency,
        latency=args.latency,
        rounds=args.rounds,
        frequency=args.frequency,
        perf=args.perf,
    )
    print(render(results, args.frequency, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
