"""Bytecodes per job, by package and by function: ``python -m benchmarks._bytecodes``.

Instruction counts (``benchmarks._instructions``) say how much more a client executes than
the floor, not where. This runs each client (``ours``, or ``floor-<interval s>``) in a fresh
interpreter against the emulator with a trace function that counts every bytecode executed
during the measured batch (``sys.settrace`` with ``f_trace_opcodes``), per function; the
counts are summed per package and divided by the jobs and by the requests the emulator saw.
Like instruction counts they do not move with the machine's load; unlike them they see only
Python (not C code such as msgspec, aiohttp's parser or the interpreter's own work per
bytecode), and tracing makes Python tens of times slower, so a client may batch more work per
loop pass than it would at full speed.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import msgspec

from benchmarks._common import PhaseOutcome, WorkerSpec, child_report
from benchmarks._emulator import EmulatorProcess
from benchmarks._instructions import _spec

__all__ = ["Counted", "main", "package_of", "render"]

ROOT = Path(__file__).resolve().parent.parent
SEED = 7
#: Packages told apart in the report; everything else is "other".
PACKAGES = ("wavespeed_async", "aiohttp", "asyncio", "anyio", "yarl", "multidict", "json")


def package_of(filename: str) -> str:
    """The package a code object's file belongs to.

    ``benchmarks`` for the clients' own harness code, ``other`` for the rest of the standard
    library and site-packages.
    """
    parts = Path(filename).parts
    for name in PACKAGES:
        if name in parts:
            return name
    return "benchmarks" if "benchmarks" in parts else "other"


class Counted(msgspec.Struct, frozen=True):
    """One client's measured batch: bytecodes per function (``file:line name``)."""

    client: str
    jobs: int
    ok: int
    requests: int
    functions: dict[str, int]

    def per_package(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for key, n in self.functions.items():
            totals[package_of(key.rsplit(":", 1)[0])] += n
        return dict(totals)


@dataclass
class _Tracer:
    counts: Counter[CodeType]

    def global_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return self.local_trace

    def local_trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.counts[frame.f_code] += 1
        return self.local_trace


def _child(spec: WorkerSpec) -> Counted:
    """Run one client in this interpreter; count bytecodes after its warm-up."""
    from benchmarks._worker import _load

    runner = _load(spec)
    tracer = _Tracer(Counter())

    def checkpoint(_warm: PhaseOutcome) -> None:
        url = f"{spec.base_url}/_emulator/reset"  # the local emulator (http://127.0.0.1)
        reset = urllib.request.Request(url, method="POST")  # noqa: S310
        with urllib.request.urlopen(reset, timeout=10):  # noqa: S310
            pass
        sys.settrace(tracer.global_trace)

    try:
        _warm, measured = runner(spec, checkpoint)
    finally:
        sys.settrace(None)
    functions = {
        f"{code.co_filename}:{code.co_firstlineno} {code.co_name}": n
        for code, n in tracer.counts.items()
    }
    return Counted(spec.client, measured.jobs, measured.ok, 0, functions)


def count(
    emu: EmulatorProcess, client: str, *, jobs: int, warmup: int, concurrency: int
) -> Counted:
    """One client in a fresh interpreter against ``emu``."""
    spec = _spec(client, emu.base_url, jobs, warmup, concurrency)
    spec = msgspec.structs.replace(spec, tag=f"bytecodes {client} {time.time()}")
    line = child_report(
        ["benchmarks._bytecodes", "--child", msgspec.json.encode(spec).decode()],
        cwd=ROOT,
        timeout_s=1800,
        what=client,
    )
    counted = msgspec.json.decode(line, type=Counted)
    if counted.ok != counted.jobs:
        raise RuntimeError(f"{client}: {counted.ok}/{counted.jobs} jobs completed")
    requests = emu.stats().requests_total
    return msgspec.structs.replace(counted, client=client, requests=requests)


def _short(key: str) -> str:
    """``file:line name`` with the file from its package's folder on."""
    path, _, rest = key.rpartition(":")
    parts = Path(path).parts
    for name in (*PACKAGES, "benchmarks"):
        if name in parts:
            parts = parts[parts.index(name) :]
            break
    else:
        parts = parts[-2:]
    return "/".join(parts) + ":" + rest


def render(results: Sequence[Counted], *, top: int = 20) -> str:
    """A table of bytecodes per job (and per request) by package for every client.

    Then the functions of ``wavespeed_async`` that run the most bytecodes per job.
    """
    packages = [*PACKAGES, "benchmarks", "other"]
    lines = [
        "| client | requests/job | bytecodes/job | per request | " + " | ".join(packages) + " |",
        "|---|--:|--:|--:|" + "--:|" * len(packages),
    ]
    for r in results:
        by_pkg = r.per_package()
        total = sum(by_pkg.values())
        lines.append(
            f"| {r.client} | {r.requests / r.jobs:.2f} | {total / r.jobs:,.0f} "
            f"| {total / max(1, r.requests):,.0f} | "
            + " | ".join(f"{by_pkg.get(p, 0) / r.jobs:,.0f}" for p in packages)
            + " |"
        )
    ours = next((r for r in results if r.client == "ours"), None)
    if ours is not None:
        own = _own_functions(ours.functions)
        lines += [
            "",
            f"wavespeed_async's functions by bytecodes per job (top {top}):",
            "",
            "| function | bytecodes/job |",
            "|---|--:|",
        ]
        lines += [f"| `{_short(k)}` | {n / ours.jobs:,.0f} |" for k, n in own[:top]]
    return "\n".join(lines)


def _own_functions(functions: Mapping[str, int]) -> list[tuple[str, int]]:
    own = [
        (k, n)
        for k, n in functions.items()
        if package_of(k.rpartition(":")[0]) == "wavespeed_async"
    ]
    return sorted(own, key=lambda item: -item[1])


def main(argv: Sequence[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["--child"]:
        spec = msgspec.json.decode(args_in[1], type=WorkerSpec)
        sys.stdout.write(msgspec.json.encode(_child(spec)).decode() + "\n")
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks._bytecodes", description=__doc__)
    p.add_argument("clients", nargs="*", default=["ours", "floor-0.5"])
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--latency", default="0.5", help="the emulator's --latency (0: instant)")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(args_in)
    with EmulatorProcess(latency=args.latency, seed=SEED, cwd=ROOT) as emu:
        results = [
            count(emu, c, jobs=args.jobs, warmup=args.warmup, concurrency=args.concurrency)
            for c in args.clients
        ]
    print(
        f"concurrency {args.concurrency}, emulator --latency {args.latency}, warm-up "
        f"{args.warmup} jobs, {args.jobs} jobs counted\n"
    )
    print(render(results, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
