"""A worker killed while its rows wait for their start, as a Ray actor dies mid-block.

The worker runs the actors' code (``GenerateWorker``) in a process of its own on ``n`` rows.
:func:`kill_while_rows_wait`: under a start window of 2 tasks a minute, it is killed
(SIGKILL, by its pid) once every row is in the ledger: 2 sent, the others pulled and
waiting for their turn. :func:`kill_while` kills it whenever its ledger entries say so
(rows waiting out a 429, say).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CANARY_KEY
from wavespeed_async.jobs.ledger import Entry, open_ledger
from wavespeed_async.ray._generate import row_key

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "test-ledger"

_SCRIPT = """
import sys, anyio, pyarrow as pa
from tests.conftest import fast_poll
from wavespeed_async import FlowLimits
from wavespeed_async.ray._generate import GenerateOptions, GenerateWorker
model, base_url, ledger, namespace, n, rate = sys.argv[1:5] + [int(a) for a in sys.argv[5:7]]
w = GenerateWorker(GenerateOptions(
    model=model, concurrency=n, limits=FlowLimits(max_tasks_per_minute=rate or None),
    base_url=base_url, ledger=ledger, ledger_namespace=namespace, poll=fast_poll()))
async def main():
    async for _ in w(pa.table({"prompt": [f"waits {i}" for i in range(n)]})):
        pass
anyio.run(main)
"""


def prompts(n: int) -> list[str]:
    return [f"waits {i}" for i in range(n)]


def kill_while_rows_wait(model: str, base_url: str, location: str, n: int) -> list[str]:
    """Run the worker on ``n`` rows and kill it while ``n - 2`` of them wait; the prompts."""

    def ready(entries: list[Entry | None]) -> bool:
        sent = sum(e is not None and e.task_id is not None for e in entries)
        return None not in entries and sent == 2

    return kill_while(model, base_url, location, n, rate=2, ready=ready)


def kill_while(
    model: str,
    base_url: str,
    location: str,
    n: int,
    *,
    rate: int,
    ready: Callable[[list[Entry | None]], bool],
) -> list[str]:
    """Run the worker on ``n`` rows, kill it once ``ready`` says so, and return the prompts.

    ``rate``: tasks a minute (0: no window); ``ready`` is asked of the rows' ledger entries.
    """
    keys = [row_key(model, {"prompt": p}) for p in prompts(n)]
    book = open_ledger(location, NAMESPACE)
    env = {**os.environ, "WAVESPEED_API_KEY": CANARY_KEY}
    argv = [sys.executable, "-c", _SCRIPT, model, base_url, location, NAMESPACE, str(n), str(rate)]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            entries = [book.get(k) for k in keys]
            if ready(entries):
                break
            assert proc.poll() is None, "the worker ended before its rows waited"
            assert time.monotonic() < deadline, f"the rows never all waited: {entries}"
            time.sleep(0.02)
        time.sleep(0.2)  # the others wait for a start a minute away: give them a moment
    finally:
        proc.kill()
        proc.wait()
        book.close()
    return prompts(n)
