"""Turning a client's own report and the emulator's records into the published figures."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import msgspec

from benchmarks._common import WorkerReport
from benchmarks._emulator import EmulatorStats

__all__ = [
    "PhaseFigures",
    "RunFigures",
    "ideal_makespan",
    "percentile",
    "phase_figures",
    "run_figures",
]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values (NaN when empty)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if n == 1:
        return sorted_values[0]
    pos = q * (n - 1)
    i = min(int(pos), n - 2)
    return sorted_values[i] + (sorted_values[i + 1] - sorted_values[i]) * (pos - i)


def ideal_makespan(durations: Sequence[float], concurrency: int) -> float:
    """The wall time if every task were seen done the instant it finished.

    List scheduling: ``concurrency`` slots; each job, in submission order, starts on the
    slot that frees first and holds it for its duration on the emulator (created to
    finished). Submits and detection take no time.
    """
    slots = [0.0] * min(concurrency, max(1, len(durations)))
    for d in durations:
        heapq.heapreplace(slots, slots[0] + d)
    return max(slots) if durations else 0.0


class PhaseFigures(msgspec.Struct, frozen=True, kw_only=True):
    """What the emulator saw of one batch (its counters were reset just before it)."""

    tasks: int
    completed: int
    requests_total: int
    requests_per_job: float
    polls_per_task: float
    polls_per_task_p50: float
    polls_per_task_max: int
    detect_p50_ms: float
    detect_p95_ms: float
    detect_mean_ms: float
    detect_max_ms: float
    tasks_not_seen_done: int
    duplicate_prompts: int
    max_concurrent_requests: int
    mean_task_s: float
    ideal_s: float
    ideal_simple_s: float


def phase_figures(stats: EmulatorStats, jobs: int, concurrency: int) -> PhaseFigures:
    """Requests, polls, detection latency and the ideal wall time from the records."""
    records = sorted(stats.tasks.values(), key=lambda t: t.created_at)
    latencies: list[float] = []
    durations: list[float] = []
    unseen = 0
    for t in records:
        if t.finished_at is None:
            unseen += 1
            continue
        durations.append(t.finished_at - t.created_at)
        if t.first_seen_finished_at is None:
            unseen += 1
        else:
            latencies.append(max(0.0, t.first_seen_finished_at - t.finished_at))
    latencies.sort()
    polls = sorted(t.polls for t in records)
    mean_task = sum(durations) / len(durations) if durations else math.nan
    n = max(1, jobs)
    return PhaseFigures(
        tasks=stats.tasks_created,
        completed=stats.tasks_completed,
        requests_total=stats.requests_total,
        requests_per_job=stats.requests_total / n,
        polls_per_task=stats.polls_total / n,
        polls_per_task_p50=percentile([float(p) for p in polls], 0.5),
        polls_per_task_max=polls[-1] if polls else 0,
        detect_p50_ms=1000 * percentile(latencies, 0.5),
        detect_p95_ms=1000 * percentile(latencies, 0.95),
        detect_mean_ms=1000 * sum(latencies) / len(latencies) if latencies else math.nan,
        detect_max_ms=1000 * latencies[-1] if latencies else math.nan,
        tasks_not_seen_done=unseen,
        duplicate_prompts=len(stats.duplicate_prompts),
        max_concurrent_requests=stats.max_concurrent_requests,
        mean_task_s=mean_task,
        ideal_s=ideal_makespan(durations, concurrency),
        ideal_simple_s=jobs / concurrency * mean_task,
    )


class RunFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One client's published figures for its measured batch."""

    name: str
    label: str
    client: str
    poll: str
    poll_interval_s: float | None
    jobs: int
    concurrency: int
    ok: int
    failed: int
    timed_out: bool
    wall_s: float
    wall_over_ideal: float
    cpu_s: float
    cpu_ms_per_job: float
    cpu_us_per_request: float
    #: Times a thread of the client's process blocked and woke, per request (``None`` in
    #: results stored before they were counted).
    sleeps_per_request: float | None = None
    rss_baseline_mib: float
    rss_peak_mib: float
    rss_delta_mib: float
    rss_end_mib: float
    emulator_cpu_s: float | None
    emulator_cpu_share: float | None
    settings: dict[str, object]
    emulator: PhaseFigures
    warmup: PhaseFigures
    worker: WorkerReport


def run_figures(
    *,
    name: str,
    label: str,
    poll: str,
    poll_interval_s: float | None,
    concurrency: int,
    settings: dict[str, object],
    report: WorkerReport,
    measured: PhaseFigures,
    warmup: PhaseFigures,
    emulator_cpu_s: float | None,
) -> RunFigures:
    m = report.measured
    cpu = m.cpu_user_s + m.cpu_sys_s
    jobs = max(1, m.jobs)
    mib = 1024.0
    return RunFigures(
        name=name,
        label=label,
        client=report.client,
        poll=poll,
        poll_interval_s=poll_interval_s,
        jobs=m.jobs,
        concurrency=concurrency,
        ok=m.ok,
        failed=m.failed,
        timed_out=m.timed_out,
        wall_s=m.wall_s,
        wall_over_ideal=m.wall_s / measured.ideal_s if measured.ideal_s > 0 else math.nan,
        cpu_s=cpu,
        cpu_ms_per_job=1000 * cpu / jobs,
        cpu_us_per_request=1e6 * cpu / max(1, measured.requests_total),
        sleeps_per_request=(
            None if m.sleeps is None else m.sleeps / max(1, measured.requests_total)
        ),
        rss_baseline_mib=report.rss_baseline_kib / mib,
        rss_peak_mib=report.rss_peak_kib / mib,
        rss_delta_mib=(report.rss_peak_kib - report.rss_baseline_kib) / mib,
        rss_end_mib=report.rss_end_kib / mib,
        emulator_cpu_s=emulator_cpu_s,
        emulator_cpu_share=(emulator_cpu_s / m.wall_s) if emulator_cpu_s is not None else None,
        settings=settings,
        emulator=measured,
        warmup=warmup,
        worker=report,
    )
