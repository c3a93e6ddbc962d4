"""What the orchestrator and the client subprocesses share: the job spec, the report, prompts.

Everything here is cheap to import: a client subprocess imports this module before its
baseline memory is taken, so it must not pull in any HTTP library.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, Literal

import msgspec

__all__ = [
    "MODEL",
    "PROTOCOL_PREFIX",
    "Checkpoint",
    "ClientKind",
    "PhaseOutcome",
    "Stopwatch",
    "WorkerReport",
    "WorkerSpec",
    "current_rss_kib",
    "peak_rss_kib",
    "prompts",
]

#: The model every job runs (validated by the emulator like the real API).
MODEL: Final = "wavespeed-ai/flux-kontext-pro/text-to-image"

#: Lines a worker writes on stdout for the orchestrator start with this; anything else on
#: stdout (the official SDK prints its retries there) is passed through to stderr.
PROTOCOL_PREFIX: Final = "@@bench "

#: Which client a worker runs.
ClientKind = Literal["ours", "floor", "official"]


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One client run, as the orchestrator hands it to a fresh interpreter.

    Attributes:
        client: ``ours`` (``Client.run_many``), ``floor`` (hand-written aiohttp loop) or
            ``official`` (the ``wavespeed`` SDK in a thread pool).
        base_url: The emulator.
        jobs: Jobs in the measured batch.
        warmup: Jobs in the warm-up batch run first by the same client object.
        concurrency: Jobs at once (the same for every client).
        tag: Makes this run's prompts unique.
        poll_interval_s: The fixed poll interval (``floor``, ``official``).
        max_in_flight, max_polls_per_s, max_connections: ``ours``: its ``FlowLimits``.
        webhook: ``ours``: submit with a webhook to a receiver in the worker's process,
            which verifies each delivery and hands it to ``Client.deliver``.
        events: ``ours``: who listens to the Client's events: ``""`` (no one: nothing is
            built), ``"listener"`` (``on_event``, counting them) or ``"stream"`` (a task
            reading ``client.events()``).
        connection_limit: ``floor``: the aiohttp pool size.
        time_limit_s: A batch that takes longer is abandoned (the run is then reported as
            incomplete); the orchestrator also kills a worker that overruns.
    """

    client: ClientKind
    base_url: str
    jobs: int
    warmup: int
    concurrency: int
    tag: str
    poll_interval_s: float | None = None
    max_in_flight: int | None = 256
    max_polls_per_s: float | None = 500.0
    max_connections: int = 100
    webhook: bool = False
    events: str = ""
    connection_limit: int = 100
    #: Pin the client's process to one CPU core (``os.sched_setaffinity``).
    one_core: bool = False
    time_limit_s: float = 600.0


class PhaseOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one batch came to, measured inside the client's process."""

    jobs: int
    ok: int
    failed: int
    timed_out: bool
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    #: Times a thread of the process blocked and was woken again (voluntary context
    #: switches, all threads summed): each costs CPU time of its own, which instruction
    #: counts do not see. ``None`` in results stored before they were counted.
    sleeps: int | None = None


class WorkerReport(msgspec.Struct, frozen=True, kw_only=True):
    """A client process's own figures.

    Memory is in KiB: ``rss_baseline_kib`` is the peak RSS right after the imports (before
    any work), ``rss_peak_kib`` the peak RSS at the end (``VmHWM``: the warm-up is
    smaller than the measured batch, so the peak belongs to the measured batch), and
    ``rss_end_kib`` the resident size at the end.
    """

    client: ClientKind
    rss_baseline_kib: int
    rss_after_warmup_kib: int
    rss_peak_kib: int
    rss_end_kib: int
    warmup: PhaseOutcome
    measured: PhaseOutcome
    python: str


def prompts(tag: str, n: int) -> Iterator[dict[str, str]]:
    """``n`` inputs with unique prompts, made lazily (memory does not grow with ``n``)."""
    for i in range(n):
        yield {"prompt": f"{tag} job {i}: a lighthouse on a cliff at dusk, watercolor"}


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB.

    ``VmHWM`` from /proc where it exists: unlike ``ru_maxrss``, which Linux carries over
    from the parent through fork and exec (a child would report the orchestrator's peak),
    it belongs to this program's own address space. ``ru_maxrss`` elsewhere.
    """
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def current_rss_kib() -> int:
    """This process's resident set size now, in KiB (0 where /proc is missing)."""
    return _proc_status_kib("VmRSS") or 0


class Stopwatch:
    """Wall time and this process's CPU time (all threads, user and system) from creation."""

    __slots__ = ("_ru", "_t0")

    def __init__(self) -> None:
        self._ru = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()

    def stop(self, *, jobs: int, ok: int, failed: int, timed_out: bool) -> PhaseOutcome:
        wall = time.perf_counter() - self._t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return PhaseOutcome(
            jobs=jobs,
            ok=ok,
            failed=failed,
            timed_out=timed_out,
            wall_s=wall,
            cpu_user_s=ru.ru_utime - self._ru.ru_utime,
            cpu_sys_s=ru.ru_stime - self._ru.ru_stime,
            sleeps=ru.ru_nvcsw - self._ru.ru_nvcsw,
        )


#: Called by a client between its warm-up and its measured batch: reports the warm-up and
#: returns when the orchestrator has reset the emulator's counters.
Checkpoint = Callable[[PhaseOutcome], None]


def child_report(args: Sequence[str], *, cwd: Path, timeout_s: float, what: str) -> bytes:
    """Run ``python -m ARGS`` in ``cwd`` and return the last line it printed (its report).

    Raises:
        RuntimeError: it failed; the message ends with the end of its stderr.
    """
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{what}: exit code {proc.returncode}\n{tail}")
    return proc.stdout.strip().splitlines()[-1]
