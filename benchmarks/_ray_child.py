"""One side of the Ray comparison, in a fresh interpreter.

``python -m benchmarks._ray_child {run_many|ray} BASE_URL JOBS CONCURRENCY ACTORS``: runs a
warm-up batch, resets the emulator's counters, runs the measured batch, and prints one JSON
line: wall time, rows completed, and CPU seconds.

CPU is user + system time: for ``run_many``, this process's (``getrusage``); for ``ray``,
``/proc/<pid>/stat`` (utime + stime) of every process of the local Ray instance (the
driver, ``gcs_server``, the raylet and its workers: the actors), sampled every 0.1 s during
the measured run, since the actors exit when the pipeline ends. The actors' part is
reported on its own.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import msgspec

from benchmarks._common import MODEL, prompts
from wavespeed_async import Client, FlowLimits

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, str, float] | None:
    """(parent pid, command, CPU seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), cmd.decode(errors="replace"), (int(fields[11]) + int(fields[12])) / TICK


class CpuSampler:
    """CPU seconds of a process tree, sampled until stopped (the last value of each pid)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}
        self.baseline: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> dict[int, tuple[str, float]]:
        table = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
                table[int(entry.name)] = info
        found, grew = {self.root}, True
        while grew:
            more = {pid for pid, info in table.items() if info[0] in found} - found
            found |= more
            grew = bool(more)
        return {pid: (table[pid][1], table[pid][2]) for pid in found if pid in table}

    def start(self) -> None:
        self.baseline = {pid: cpu for pid, (_, cpu) in self._tree().items()}
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self._tree())
            self._stop.wait(0.1)

    def stop(self) -> tuple[float, float]:
        """(CPU seconds of every process, of the actors alone) since start()."""
        self._stop.set()
        self._thread.join()
        self.seen.update(self._tree())
        total = actors = 0.0
        for pid, (cmd, cpu) in self.seen.items():
            used = cpu - self.baseline.get(pid, 0.0)
            total += used
            if cmd.startswith("ray::MapWorker"):
                actors += used
        return total, actors


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset(base_url: str) -> None:
    req = urllib.request.Request(base_url + "/_emulator/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=60):  # noqa: S310 - 127.0.0.1
        pass


async def _batch(base_url: str, tag: str, jobs: int, concurrency: int) -> int:
    ok = 0
    async with Client("benchmark", base_url=base_url, limits=FlowLimits()) as client:
        async with client.run_many(MODEL, prompts(tag, jobs), concurrency=concurrency) as rs:
            async for r in rs:
                ok += r.ok
    return ok


def run_many(base_url: str, jobs: int, concurrency: int) -> dict[str, float]:
    anyio.run(_batch, base_url, "warm-up", min(jobs, 100), concurrency)
    reset(base_url)
    cpu0 = _self_cpu()
    started = time.perf_counter()
    ok = anyio.run(_batch, base_url, "measured", jobs, concurrency)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "ok": ok, "cpu_s": _self_cpu() - cpu0, "actors_cpu_s": 0.0}


def ray_pipeline(base_url: str, jobs: int, concurrency: int, actors: int) -> dict[str, float]:
    import ray

    from wavespeed_async.ray import generate

    os.environ["WAVESPEED_API_KEY"] = "benchmark"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False

    def run(tag: str, n: int) -> int:
        ds = ray.data.from_items(list(prompts(tag, n)), override_num_blocks=8)
        out = generate(
            ds,
            model=MODEL,
            actors=actors,
            concurrency=concurrency // actors,
            base_url=base_url,
            batch_size=64,
        )
        return sum(1 for row in out.iter_rows() if row["status"] == "completed")

    try:
        run("warm-up", min(jobs, 100))
        reset(base_url)
        sampler = CpuSampler(os.getpid())
        sampler.start()
        started = time.perf_counter()
        ok = run("measured", jobs)
        wall = time.perf_counter() - started
        total, actor_cpu = sampler.stop()
    finally:
        ray.shutdown()
    return {"wall_s": wall, "ok": ok, "cpu_s": total, "actors_cpu_s": actor_cpu}


def main(argv: list[str]) -> int:
    kind, base_url, jobs, concurrency, actors = argv
    if kind == "ray":
        report = ray_pipeline(base_url, int(jobs), int(concurrency), int(actors))
    else:
        report = run_many(base_url, int(jobs), int(concurrency))
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
