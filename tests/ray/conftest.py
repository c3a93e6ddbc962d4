"""Fixtures for the Ray tests: one local Ray instance and one emulator process for them all.

Ray starts in seconds, so it starts once (2 CPUs, no dashboard, a small object store in a
temporary folder of its own) and is shut down, its processes stopped by pid and its folder
removed, once the last test of this package is done: nothing of it runs beside the rest of
the suite. The emulator runs in its own process on 127.0.0.1 (Ray's actors are other
processes), and its counters are reset before each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks._emulator import EmulatorProcess
from tests.conftest import CANARY_KEY
from wavespeed_async import PollConfig, RetryConfig

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"


def fast_poll() -> PollConfig:
    return PollConfig(expected_duration_s=0.03, min_interval_s=0.005, max_interval_s=0.05)


def fast_retry() -> RetryConfig:
    return RetryConfig(backoff_base_s=0.001, max_backoff_s=0.01, max_retry_after_s=0.05)


@dataclass
class RayEmulator:
    """The emulator process as the tests see it."""

    proc: EmulatorProcess

    @property
    def base_url(self) -> str:
        return self.proc.base_url

    def stats(self) -> dict[str, Any]:
        url = self.base_url + "/_emulator/stats"
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - 127.0.0.1
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def reset(self) -> None:
        self.proc.reset()


@dataclass
class LocalRay:
    """The session's Ray instance: the raylet's pid, to find (and kill) its workers."""

    raylet_pid: int

    def map_workers(self) -> list[int]:
        """Pids of the Ray Data actors that run map_batches callables."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.raylet_pid and cmd.startswith(b"ray::MapWorker"):
                pids.append(int(entry.name))
        return pids


#: Ray's object store holds only the tests' small blocks.
OBJECT_STORE_BYTES = 128 * 1024 * 1024


@pytest.fixture(scope="package")
def local_ray() -> Iterator[LocalRay]:
    # The workers inherit the environment of the processes ray.init starts: the key is
    # set only while they start, so the rest of the suite never sees it.
    saved = os.environ.get("WAVESPEED_API_KEY")
    os.environ["WAVESPEED_API_KEY"] = CANARY_KEY
    # A short path: Ray's sockets live under it, and a socket path has ~100 characters.
    temp_dir = tempfile.mkdtemp(prefix="ws-ray-")
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _temp_dir=temp_dir,
        )
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        if saved is None:
            del os.environ["WAVESPEED_API_KEY"]
        else:
            os.environ["WAVESPEED_API_KEY"] = saved
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    children = _descendants(raylet)
    try:
        yield LocalRay(raylet)
    finally:
        ray.shutdown()
        _reap(children | _descendants(raylet))
        shutil.rmtree(temp_dir, ignore_errors=True)


def _parents() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int) -> set[int]:
    table = _parents()
    found = {root}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def _alive(pid: int) -> bool:
    entry = _parents().get(pid)
    return entry is not None and entry[1] != "Z"


def _reap(pids: set[int]) -> None:
    """Make sure no process Ray started outlives the session (each stopped by its pid)."""
    deadline = time.monotonic() + 10
    for pid in sorted(pids):
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _key_in_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key in the driver's environment, as in a user's shell.

    ``generate`` checks it there before anything runs (the workers got it when Ray started
    them).
    """
    monkeypatch.setenv("WAVESPEED_API_KEY", CANARY_KEY)


@pytest.fixture(scope="package")
def emulator_process() -> Iterator[RayEmulator]:
    with EmulatorProcess(latency="fast", seed=11, cwd=ROOT) as proc:
        yield RayEmulator(proc)


@pytest.fixture
def ray_emulator(emulator_process: RayEmulator, local_ray: LocalRay) -> RayEmulator:
    emulator_process.reset()
    return emulator_process
