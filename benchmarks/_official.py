"""Client 2: the official ``wavespeed`` SDK (sync, ``requests``), fanned out with threads.

This is how its users run many jobs today: a ``ThreadPoolExecutor`` with as many threads as
the wanted concurrency, each thread calling ``Client.run`` (which submits, then polls every
``poll_interval`` seconds, the first poll right after the submit). The SDK is untyped; this
module is the only one that imports it.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

# Untyped, and possibly not installed where only mypy runs: both are fine here.
import wavespeed  # type: ignore[import-untyped, import-not-found, unused-ignore]

from benchmarks._common import MODEL, Checkpoint, PhaseOutcome, Stopwatch, WorkerSpec, prompts

__all__ = ["run", "sdk_version"]


def sdk_version() -> str:
    return str(getattr(wavespeed, "__version__", "unknown"))


def _batch(client: object, spec: WorkerSpec, n: int, tag: str) -> PhaseOutcome:
    interval = spec.poll_interval_s or 1.0
    # ``timeout`` bounds the whole task (and each request's read) in the SDK.
    per_task_s = min(120.0, spec.time_limit_s)

    def one(inp: dict[str, str]) -> object:
        return client.run(MODEL, inp, timeout=per_task_s, poll_interval=interval)  # type: ignore[attr-defined]

    watch = Stopwatch()
    ok = failed = 0
    with ThreadPoolExecutor(max_workers=spec.concurrency) as pool:
        pending: set[Future[object]] = {pool.submit(one, inp) for inp in prompts(tag, n)}
        timed_out = False
        while pending:
            done, pending = wait(pending, timeout=spec.time_limit_s, return_when=FIRST_COMPLETED)
            if not done:  # nothing finished for a whole time limit: give up on the rest
                timed_out = True
                for f in pending:
                    f.cancel()
                break
            for f in done:
                if f.exception() is None:
                    ok += 1
                else:
                    failed += 1
    return watch.stop(jobs=n, ok=ok, failed=failed, timed_out=timed_out)


def run(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    """Warm up, report, then run the measured batch with the same SDK Client."""
    client = wavespeed.Client(api_key="benchmark", base_url=spec.base_url)
    warm = _batch(client, spec, spec.warmup, f"{spec.tag} warm-up")
    checkpoint(warm)
    measured = _batch(client, spec, spec.jobs, spec.tag)
    return warm, measured
