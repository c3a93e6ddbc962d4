"""The orchestrator: ``python -m benchmarks [--quick] [--out DIR]``.

It starts the emulator in its own process, then runs each client in a fresh interpreter
(``benchmarks._worker``), one after another on the same emulator, and resets the emulator's
counters between runs. A client's warm-up batch runs first and is left out of the figures
(its own figures are kept in the JSON, as the "cold start"). Every request goes to
127.0.0.1; every batch is bounded in jobs and in time.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import msgspec

from benchmarks._charts import draw_or_explain
from benchmarks._common import (
    MODEL,
    PROTOCOL_PREFIX,
    ClientKind,
    PhaseOutcome,
    WorkerReport,
    WorkerSpec,
)
from benchmarks._emulator import EmulatorProcess
from benchmarks._machine import machine_info
from benchmarks._metrics import RunFigures, phase_figures, run_figures
from benchmarks._multiproc import run_multiproc
from benchmarks._report import (
    Results,
    Workload,
    evaluate_targets,
    median_runs,
    render_markdown,
    simulate_policies,
)

__all__ = ["Plan", "Scenario", "main"]

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


@dataclass(frozen=True)
class Scenario:
    """One client configuration to run."""

    name: str
    label: str
    client: ClientKind
    poll: str
    poll_interval_s: float | None = None
    max_in_flight: int | None = 256
    max_polls_per_s: float | None = 500.0
    #: ``ours`` only: results pushed by webhooks to a receiver in the client's process.
    webhook: bool = False
    #: The client's process is pinned to one CPU core.
    one_core: bool = False
    #: ``ours`` only: who listens to its events (``WorkerSpec.events``).
    events: str = ""


@dataclass(frozen=True)
class InflightPlan:
    """Many tasks in flight at once, the client on one core: does it keep up?"""

    latency: str
    jobs: int
    concurrency: int
    warmup: int


@dataclass(frozen=True)
class Plan:
    """The whole run: a comparison on one workload, then a scale run."""

    mode: Literal["quick", "full"]
    latency: str
    concurrency: int
    jobs: int
    warmup: int
    scenarios: tuple[Scenario, ...]
    scale_latency: str
    scale_concurrency: int
    scale_jobs: tuple[int, ...]
    scale_warmup: int
    scale_scenarios: tuple[Scenario, ...] = field(default=())
    inflight: InflightPlan | None = None
    time_limit_s: float = 300.0
    #: The comparison runs this many times; after the first round, only ``repeated``.
    rounds: int = 1
    repeated: tuple[str, ...] = ()


OURS = Scenario(
    "ours",
    "wavespeed_async `run_many`",
    "ours",
    "adaptive (default `PollConfig`)",
)
OURS_WEBHOOK = Scenario(
    "ours-webhook",
    "wavespeed_async `run_many`",
    "ours",
    "webhooks (polling as a 10 s fallback)",
    webhook=True,
)
#: ``ours`` with a subscriber to its events: a listener that counts them, or a stream read
#: by a task of its own (what a subscriber costs; ``ours`` has none).
OURS_EVENTS = Scenario(
    "ours-events",
    "wavespeed_async `run_many`, `on_event` listener",
    "ours",
    "adaptive (default `PollConfig`)",
    events="listener",
)
OURS_STREAM = Scenario(
    "ours-stream",
    "wavespeed_async `run_many`, `events()` reader",
    "ours",
    "adaptive (default `PollConfig`)",
    events="stream",
)


def floor_scenario(interval_s: float) -> Scenario:
    """The hand-written floor polling every ``interval_s`` seconds (``floor-<s>s``)."""
    s = interval_s
    return Scenario(f"floor-{s:g}s", "hand-written aiohttp floor", "floor", f"fixed {s:g} s", s)


FLOOR = {s: floor_scenario(s) for s in (1.0, 0.5, 0.25)}
OFFICIAL = {
    s: Scenario(
        f"official-{s:g}s",
        "official `wavespeed` SDK, thread pool",
        "official",
        f"fixed {s:g} s" + (" (its default)" if s == 1.0 else ""),
        s,
    )
    for s in (1.0, 0.1)
}
OURS_SCALE = Scenario(
    "ours-scale",
    "wavespeed_async `run_many`",
    "ours",
    "adaptive (default `PollConfig`)",
    max_in_flight=None,
    max_polls_per_s=None,
)
OURS_INFLIGHT = Scenario(
    "ours-inflight",
    "wavespeed_async `run_many`, one core",
    "ours",
    "adaptive (default `PollConfig`)",
    max_in_flight=None,
    max_polls_per_s=None,
    one_core=True,
)
FLOOR_SCALE = Scenario(
    "floor-scale",
    "hand-written aiohttp floor",
    "floor",
    "fixed 1 s",
    1.0,
)


def scenario_named(client: str) -> Scenario:
    """The scenario of ``ours`` or ``floor-<interval s>`` by its name.

    ``ours-events`` and ``ours-stream`` run ``ours`` with a subscriber to its events; the
    floor's interval is written ``floor-0.5`` or ``floor-0.5s``.

    Raises:
        ValueError: another name, or an interval that is not a positive number of seconds.
    """
    named = {s.name: s for s in (OURS, OURS_EVENTS, OURS_STREAM)}
    if client in named:
        return named[client]
    kind, _, interval = client.partition("-")
    try:
        s = float(interval.removesuffix("s"))
    except ValueError:
        s = math.nan
    if kind != "floor" or not (math.isfinite(s) and s > 0):
        raise ValueError(
            f"a client is ours, ours-events, ours-stream or floor-<interval s> with an "
            f"interval above 0, got {client!r}"
        )
    return floor_scenario(s)


COMPARISON = (OURS, OURS_WEBHOOK, FLOOR[1.0], FLOOR[0.5], FLOOR[0.25], OFFICIAL[1.0], OFFICIAL[0.1])

#: The clients the CPU goals compare, run again in every round after the first.
REPEATED = ("ours", "floor-1s", "floor-0.5s", "floor-0.25s", "official-1s")

PLANS = {
    "full": Plan(
        mode="full",
        latency="0.5",
        concurrency=100,
        jobs=1500,
        warmup=300,
        scenarios=COMPARISON,
        scale_latency="0.25",
        scale_concurrency=1000,
        scale_jobs=(10_000, 40_000),
        scale_warmup=1000,
        scale_scenarios=(OURS_SCALE, FLOOR_SCALE),
        # 10,000 tasks in flight: tasks of ~15 s (the realistic profile x4), so that one
        # core keeps up with ~650 jobs/s; three waves, so that most of the batch runs in
        # the steady state rather than in the first wave.
        inflight=InflightPlan(latency="4", jobs=30_000, concurrency=10_000, warmup=1000),
        # The CPU goals compare ours with the floor and the SDK: those runs are repeated,
        # interleaved, and judged round by round (CPU time drifts between runs). One
        # round's ratio can land up to about 25% either side of the median: seven rounds,
        # not five, so that one or two odd rounds do not decide a goal that close.
        rounds=7,
        repeated=REPEATED,
    ),
    "quick": Plan(
        mode="quick",
        latency="0.5",
        concurrency=50,
        jobs=150,
        warmup=50,
        scenarios=(OURS, OURS_WEBHOOK, FLOOR[1.0], FLOOR[0.25], OFFICIAL[1.0], OFFICIAL[0.1]),
        scale_latency="0.25",
        scale_concurrency=500,
        scale_jobs=(1000, 3000),
        scale_warmup=250,
        scale_scenarios=(OURS_SCALE,),
        inflight=InflightPlan(latency="2", jobs=3000, concurrency=2000, warmup=500),
        time_limit_s=120.0,
        # One round unless asked (``--rounds``); then the same clients as the full run's.
        repeated=REPEATED,
    ),
}


def _log(message: str) -> None:
    sys.stderr.write(f"[benchmarks] {message}\n")
    sys.stderr.flush()


class _Worker:
    """A client subprocess speaking the ``benchmarks._worker`` protocol."""

    def __init__(self, spec: WorkerSpec, hard_limit_s: float) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "benchmarks._worker", msgspec.json.encode(spec).decode()],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # A worker that overruns every bound is killed (only this one process, by handle).
        self._watchdog = threading.Timer(hard_limit_s, self.proc.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def expect(self, kind: str) -> bytes:
        """Read protocol lines until one of ``kind``; pass any other output to stderr."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith(PROTOCOL_PREFIX):
                sys.stderr.write(line)
                continue
            got, _, payload = line[len(PROTOCOL_PREFIX) :].partition(" ")
            if got == kind:
                return payload.encode()
            raise RuntimeError(f"worker said {got!r}, expected {kind!r}")
        code = self.proc.wait()
        raise RuntimeError(f"worker ended (exit code {code}) before {kind!r}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        # A worker still waiting for "go" (the run failed before it) ends at its stdin's end.
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        finally:
            self._watchdog.cancel()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def run_scenario(
    emu: EmulatorProcess,
    scenario: Scenario,
    *,
    jobs: int,
    warmup: int,
    concurrency: int,
    time_limit_s: float,
    tag: str,
    around_measured: Callable[[int], AbstractContextManager[object]] | None = None,
) -> RunFigures:
    """Run one client in its own process against ``emu``, gather its figures, log a summary.

    ``around_measured``: given the worker's process id, a context entered just before the
    measured batch starts and left when it has ended (e.g. a profiler attached to it).
    """
    spec = WorkerSpec(
        client=scenario.client,
        base_url=emu.base_url,
        jobs=jobs,
        warmup=warmup,
        concurrency=concurrency,
        tag=tag,
        poll_interval_s=scenario.poll_interval_s,
        max_in_flight=scenario.max_in_flight,
        max_polls_per_s=scenario.max_polls_per_s,
        webhook=scenario.webhook,
        events=scenario.events,
        time_limit_s=time_limit_s,
        one_core=scenario.one_core,
    )
    emu.reset()
    worker = _Worker(spec, hard_limit_s=2 * time_limit_s + 60)
    try:
        worker.expect("ready")
        warm_outcome = msgspec.json.decode(worker.expect("warm"), type=PhaseOutcome)
        warm_fig = phase_figures(emu.stats(), warm_outcome.jobs, concurrency)
        emu.reset()
        around = nullcontext() if around_measured is None else around_measured(worker.proc.pid)
        with around:
            cpu0 = emu.cpu_seconds()
            worker.go()
            report = msgspec.json.decode(worker.expect("done"), type=WorkerReport)
            cpu1 = emu.cpu_seconds()
    finally:
        worker.finish()
    measured = phase_figures(emu.stats(), jobs, concurrency)
    settings: dict[str, object] = {"concurrency": concurrency, "warmup_jobs": warmup}
    if scenario.client == "ours":
        settings.update(
            max_in_flight=scenario.max_in_flight,
            max_polls_per_s=scenario.max_polls_per_s,
            max_connections=spec.max_connections,
            poll="PollConfig() defaults",
            webhook=scenario.webhook,
            one_core=scenario.one_core,
            events=scenario.events or "none",
        )
    elif scenario.client == "floor":
        settings.update(
            poll_interval_s=scenario.poll_interval_s, connection_limit=spec.connection_limit
        )
    else:
        settings.update(poll_interval_s=scenario.poll_interval_s, threads=concurrency)
    fig = run_figures(
        name=scenario.name,
        label=scenario.label,
        poll=scenario.poll,
        poll_interval_s=scenario.poll_interval_s,
        concurrency=concurrency,
        settings=settings,
        report=report,
        measured=measured,
        warmup=warm_fig,
        emulator_cpu_s=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
    )
    _log("    " + _summary(fig))
    return fig


def _summary(fig: RunFigures) -> str:
    e = fig.emulator
    share = f"{fig.emulator_cpu_share:.0%}" if fig.emulator_cpu_share is not None else "n/a"
    sleeps = "n/a" if fig.sleeps_per_request is None else f"{fig.sleeps_per_request:.2f}"
    return (
        f"{fig.name}: {fig.ok}/{fig.jobs} ok in {fig.wall_s:.1f} s "
        f"(ideal {e.ideal_s:.1f} s), CPU {fig.cpu_ms_per_job:.2f} ms/job, "
        f"{e.requests_per_job:.2f} req/job, {sleeps} sleeps/request, "
        f"detect p50 {e.detect_p50_ms:.0f} ms, "
        f"peak RSS {fig.rss_peak_mib:.1f} MiB, emulator CPU {share}"
    )


def execute(plan: Plan, only: Sequence[str] | None, command: str) -> Results:
    """Run the plan.

    ``only`` restricts it to scenarios with these names; ``command`` is recorded as the
    command that ran it (see :func:`command_line`).
    """
    started = time.monotonic()
    info = machine_info(ROOT)
    rounds: list[list[RunFigures]] = []
    scale: list[RunFigures] = []
    run_id = time.strftime("%H%M%S")
    scenarios = [s for s in plan.scenarios if not only or s.name in only]
    if scenarios:
        with EmulatorProcess(latency=plan.latency, seed=SEED, cwd=ROOT) as emu:
            _log(f"emulator (--latency {plan.latency}) on {emu.base_url}")
            for r in range(1, plan.rounds + 1):
                this_round = [s for s in scenarios if r == 1 or s.name in plan.repeated]
                if r > 1 and len(this_round) < 2:
                    break  # a lone client has nothing to be compared with in its round
                # Each round starts one client later, so that no client's figures always
                # come from the same place in the round (e.g. first, after a pause).
                shift = (r - 1) % len(this_round)
                this_round = this_round[shift:] + this_round[:shift]
                runs: list[RunFigures] = []
                for i, sc in enumerate(this_round, 1):
                    _log(
                        f"[round {r}/{plan.rounds}, {i}/{len(this_round)}] {sc.name}: "
                        f"{plan.jobs} jobs, c={plan.concurrency}"
                    )
                    fig = run_scenario(
                        emu,
                        sc,
                        jobs=plan.jobs,
                        warmup=plan.warmup,
                        concurrency=plan.concurrency,
                        time_limit_s=plan.time_limit_s,
                        tag=f"{run_id} {sc.name} {r}",
                    )
                    runs.append(fig)
                rounds.append(runs)
    comparison = median_runs(rounds)
    scale_scenarios = [s for s in plan.scale_scenarios if not only or s.name in only]
    if scale_scenarios:
        with EmulatorProcess(latency=plan.scale_latency, seed=SEED, cwd=ROOT) as emu:
            _log(f"scale emulator (--latency {plan.scale_latency}) on {emu.base_url}")
            for sc in scale_scenarios:
                for jobs in plan.scale_jobs:
                    _log(f"{sc.name}: {jobs} jobs, c={plan.scale_concurrency}")
                    fig = run_scenario(
                        emu,
                        sc,
                        jobs=jobs,
                        warmup=plan.scale_warmup,
                        concurrency=plan.scale_concurrency,
                        time_limit_s=plan.time_limit_s,
                        tag=f"{run_id} {sc.name} {jobs}",
                    )
                    scale.append(fig)
    inflight: list[RunFigures] = []
    ip = plan.inflight
    if ip is not None and (not only or OURS_INFLIGHT.name in only):
        with EmulatorProcess(latency=ip.latency, seed=SEED, cwd=ROOT) as emu:
            _log(f"in-flight emulator (--latency {ip.latency}) on {emu.base_url}")
            _log(f"{OURS_INFLIGHT.name}: {ip.jobs} jobs, c={ip.concurrency}, one core")
            fig = run_scenario(
                emu,
                OURS_INFLIGHT,
                jobs=ip.jobs,
                warmup=ip.warmup,
                concurrency=ip.concurrency,
                time_limit_s=plan.time_limit_s,
                tag=f"{run_id} {OURS_INFLIGHT.name}",
            )
            inflight.append(fig)
    # Two minutes or more (the account's per-minute window): the full run, or when asked.
    wanted = "multiproc" in only if only else plan.mode == "full"
    multiproc = run_multiproc(ROOT, SEED, _log) if wanted else []
    results = Results(
        mode=plan.mode,
        command=command,
        machine=info,
        workload=Workload(
            model=MODEL,
            latency=plan.latency,
            jobs=plan.jobs,
            warmup_jobs=plan.warmup,
            concurrency=plan.concurrency,
            scale_latency=plan.scale_latency,
            scale_jobs=list(plan.scale_jobs),
            scale_warmup_jobs=plan.scale_warmup,
            scale_concurrency=plan.scale_concurrency,
            seed=SEED,
            inflight_latency=ip.latency if ip else None,
            inflight_jobs=ip.jobs if ip else None,
            inflight_concurrency=ip.concurrency if ip else None,
            inflight_warmup_jobs=ip.warmup if ip else None,
        ),
        comparison=comparison,
        scale=scale,
        inflight=inflight,
        simulation=simulate_policies(seed=SEED),
        duration_s=time.monotonic() - started,
        multiproc=multiproc,
        rounds=rounds if len(rounds) > 1 else [],
    )
    results.targets = evaluate_targets(comparison, scale, inflight, results.rounds)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark wavespeed_async against the official SDK and a hand-written "
        "aiohttp floor, on a local emulator; write a markdown table and a JSON file.",
    )
    p.add_argument(
        "--quick", action="store_true", help="a small smoke run (about a minute) instead"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write latest.md and latest.json (default benchmarks/results/; "
        "--quick: benchmarks/results/quick/)",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only re-render latest.md (next to --out) from a results JSON file",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="only the Ray Data step beside run_many (about a minute; needs the ray extra); "
        "writes ray.md and ray.json",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these scenarios (ours, ours-webhook, floor-1s, floor-0.5s, floor-0.25s, "
        "official-1s, official-0.1s, ours-scale, floor-scale, ours-inflight, multiproc: 4 "
        "processes sharing one account, with and without a Redis share)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="run the compared clients N rounds instead of the plan's (full: 7, quick: 1); "
        "more rounds narrow the median of a close ratio",
    )
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def plan_for(args: argparse.Namespace) -> Plan:
    """The plan these options ask for."""
    plan = PLANS["quick" if args.quick else "full"]
    return plan if args.rounds is None else replace(plan, rounds=args.rounds)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces a run with these options (output paths left out)."""
    parts = ["python -m benchmarks"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append("--only " + " ".join(args.only))
    if args.rounds is not None:
        parts.append(f"--rounds {args.rounds}")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_for(args)
    default_out = ROOT / "benchmarks" / "results"
    out: Path = args.out or (default_out / "quick" if args.quick else default_out)
    if args.ray:
        from benchmarks import _ray

        return _ray.main(out)
    if args.render is not None:
        results = msgspec.json.decode(args.render.read_bytes(), type=Results)
        results.targets = evaluate_targets(
            results.comparison, results.scale, results.inflight, results.rounds
        )
    else:
        results = execute(plan, args.only, command_line(args))
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")
    (out / "latest.md").write_text(render_markdown(results), encoding="utf-8")
    draw_or_explain(out / "latest.json", out)
    _log(f"done in {results.duration_s:.0f} s; wrote {out / 'latest.md'} and latest.json")
    return 0
