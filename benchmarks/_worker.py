"""One client run in a fresh interpreter: ``python -m benchmarks._worker '<WorkerSpec JSON>'``.

The client's library is imported first and the baseline memory taken right after, so the
figures (peak RSS, CPU time) belong to this client alone. Protocol on stdout (lines starting
with ``PROTOCOL_PREFIX``): ``ready {baseline}`` after the imports, ``warm {outcome}`` after
the warm-up batch (the worker then waits for a line on stdin: the orchestrator reads and
resets the emulator's counters meanwhile), and ``done {WorkerReport}`` at the end.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
from collections.abc import Callable

import msgspec

from benchmarks._common import (
    PROTOCOL_PREFIX,
    Checkpoint,
    PhaseOutcome,
    WorkerReport,
    WorkerSpec,
    current_rss_kib,
    peak_rss_kib,
)

__all__ = ["main"]

Runner = Callable[[WorkerSpec, Checkpoint], tuple[PhaseOutcome, PhaseOutcome]]


def _send(kind: str, payload: object) -> None:
    sys.stdout.write(f"{PROTOCOL_PREFIX}{kind} {msgspec.json.encode(payload).decode()}\n")
    sys.stdout.flush()


def _load(spec: WorkerSpec) -> Runner:
    """Import only the library of the client under test."""
    if spec.client == "ours":
        from benchmarks import _ours

        return _ours.run
    if spec.client == "floor":
        from benchmarks import _floor

        return _floor.run
    from benchmarks import _official

    return _official.run


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = msgspec.json.decode(args[0], type=WorkerSpec)
    if spec.one_core and hasattr(os, "sched_setaffinity"):
        # Everything this process does (event loop, threads) runs on one core.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    runner = _load(spec)
    gc.collect()
    baseline = peak_rss_kib()
    _send("ready", {"rss_baseline_kib": baseline})
    after_warmup = [0]

    def checkpoint(warm: PhaseOutcome) -> None:
        after_warmup[0] = peak_rss_kib()
        _send("warm", warm)
        if not sys.stdin.readline():  # the orchestrator went away
            raise SystemExit(3)

    warm, measured = runner(spec, checkpoint)
    _send(
        "done",
        WorkerReport(
            client=spec.client,
            rss_baseline_kib=baseline,
            rss_after_warmup_kib=after_warmup[0],
            rss_peak_kib=peak_rss_kib(),
            rss_end_kib=current_rss_kib(),
            warmup=warm,
            measured=measured,
            python=platform.python_version(),
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
