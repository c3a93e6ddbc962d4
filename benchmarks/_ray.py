"""``python -m benchmarks --ray``: the Ray Data step beside ``run_many`` in one process.

The same workload for both (unique FLUX.1 Kontext [pro] prompts on the emulator in its own
process, the same total concurrency), each side in a fresh interpreter
(``benchmarks._ray_child``) after a warm-up batch. Figures: rows per second, CPU per row
(every process involved: for Ray, the driver, its services and the actors, with the actors'
share on its own) and requests per row as the emulator counted them. Writes ``ray.md`` and
``ray.json`` next to the other results.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import msgspec

from benchmarks._common import child_report
from benchmarks._emulator import EmulatorProcess
from benchmarks._machine import machine_info

__all__ = ["RayRow", "main"]

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


class RayRow(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    jobs: int
    ok: int
    wall_s: float
    rows_per_s: float
    cpu_ms_per_row: float
    actors_cpu_ms_per_row: float | None
    requests_per_row: float
    tasks_created: int
    duplicate_prompts: int


class RayResults(msgspec.Struct, kw_only=True):
    command: str
    latency: str
    jobs: int
    concurrency: int
    actors: int
    machine: dict[str, object]
    rows: list[RayRow]
    duration_s: float


def _child(kind: str, emu: EmulatorProcess, jobs: int, concurrency: int, actors: int) -> RayRow:
    emu.reset()
    args = [kind, emu.base_url, str(jobs), str(concurrency), str(actors)]
    line = child_report(
        ["benchmarks._ray_child", *args], cwd=ROOT, timeout_s=600, what=f"{kind} run"
    )
    report = msgspec.json.decode(line)
    stats = emu.stats()
    actors_cpu = report["actors_cpu_s"] if kind == "ray" else None
    return RayRow(
        name="Ray Data `generate`" if kind == "ray" else "`run_many`, one process",
        jobs=jobs,
        ok=report["ok"],
        wall_s=report["wall_s"],
        rows_per_s=jobs / report["wall_s"],
        cpu_ms_per_row=1000 * report["cpu_s"] / jobs,
        actors_cpu_ms_per_row=None if actors_cpu is None else 1000 * actors_cpu / jobs,
        requests_per_row=stats.requests_total / jobs,
        tasks_created=stats.tasks_created,
        duplicate_prompts=len(stats.duplicate_prompts),
    )


def render(results: RayResults) -> str:
    m = results.machine
    lines = [
        "# Ray Data step beside `run_many`",
        "",
        f"`{results.command}`: {results.jobs} FLUX.1 Kontext [pro] rows on the emulator "
        f"(`--latency {results.latency}`), total concurrency {results.concurrency} "
        f"(Ray: {results.actors} actors x {results.concurrency // results.actors}, "
        "`num_cpus=0.25` each, a local Ray instance with 2 CPUs). "
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; "
        f"load average at start {m.get('load_average_at_start')}; "
        f"run took {results.duration_s:.0f} s.",
        "",
        "| client | rows ok | wall (s) | rows/s | CPU ms/row (all processes) "
        "| of which actors | requests/row | tasks created | duplicates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.rows:
        actors = f"{r.actors_cpu_ms_per_row:.2f}" if r.actors_cpu_ms_per_row is not None else "-"
        lines.append(
            f"| {r.name} | {r.ok}/{r.jobs} | {r.wall_s:.1f} | {r.rows_per_s:.1f} "
            f"| {r.cpu_ms_per_row:.2f} | {actors} | {r.requests_per_row:.2f} "
            f"| {r.tasks_created} | {r.duplicate_prompts} |"
        )
    lines += [
        "",
        "CPU is user + system time: for `run_many` its one process (`getrusage`); for Ray, "
        "utime + stime from `/proc/<pid>/stat` of every process of the local instance "
        "(driver, GCS, raylet, actors and Ray's helper workers), sampled every 0.1 s during "
        "the measured run (what a process that exits uses in its last 0.1 s is missed). "
        "Ray's wall time includes starting the actor pool (a new one per pipeline run).",
        "",
    ]
    return "\n".join(lines)


def main(out: Path, *, jobs: int = 600, concurrency: int = 100, actors: int = 2) -> int:
    started = time.monotonic()
    latency = "0.5"
    rows = []
    with EmulatorProcess(latency=latency, seed=SEED, cwd=ROOT) as emu:
        for kind in ("run_many", "ray"):
            sys.stderr.write(f"[benchmarks] {kind}: {jobs} rows, concurrency {concurrency}\n")
            rows.append(_child(kind, emu, jobs, concurrency, actors))
            sys.stderr.write(f"[benchmarks]     {rows[-1]}\n")
    info = machine_info(ROOT)
    results = RayResults(
        command="python -m benchmarks --ray",
        latency=latency,
        jobs=jobs,
        concurrency=concurrency,
        actors=actors,
        machine=msgspec.to_builtins(info),
        rows=rows,
        duration_s=time.monotonic() - started,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")
    (out / "ray.md").write_text(render(results), encoding="utf-8")
    sys.stderr.write(f"[benchmarks] wrote {out / 'ray.md'} and ray.json\n")
    return 0
