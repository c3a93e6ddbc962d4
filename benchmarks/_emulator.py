"""The emulator in its own process: start it, read and reset its counters, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import msgspec

__all__ = ["EmulatorProcess", "EmulatorStats", "TaskRecord"]

_LISTENING = "WaveSpeed emulator listening on "


class TaskRecord(msgspec.Struct, frozen=True):
    """The fields of the emulator's per-task record that the benchmarks use.

    Times are emulator-clock seconds (``time.monotonic`` of the emulator's process).
    """

    status: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    first_seen_finished_at: float | None = None
    polls: int = 0


class EmulatorStats(msgspec.Struct, frozen=True):
    """The part of ``GET /_emulator/stats`` that the benchmarks use (other fields ignored)."""

    submits_received: int
    tasks_created: int
    polls_total: int
    requests_total: int
    max_concurrent_requests: int
    tasks_completed: int
    tasks_failed: int
    duplicate_prompts: list[str]
    tasks: dict[str, TaskRecord]
    rate_limited: int = 0


class EmulatorProcess:
    """``python -m wavespeed_async.emulator`` as a child process on 127.0.0.1.

    Use as a context manager; ``base_url`` is known once it has started.
    """

    def __init__(
        self, *, latency: str, seed: int, cwd: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.latency = latency
        self.seed = seed
        self.extra_args = tuple(extra_args)  # e.g. account limits
        self._cwd = cwd
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> EmulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "wavespeed_async.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--latency",
            self.latency,
            "--seed",
            str(self.seed),
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, cwd=self._cwd, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith(_LISTENING):
            self.close()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.base_url = line[len(_LISTENING) :].strip()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the emulator listens on {self.base_url!r}, not 127.0.0.1")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the emulator is not running")
        return self._proc.pid

    def _request(self, method: str, path: str) -> bytes:
        req = urllib.request.Request(self.base_url + path, method=method)  # noqa: S310 - 127.0.0.1
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - 127.0.0.1
            body: bytes = resp.read()
        return body

    def stats(self) -> EmulatorStats:
        """The counters since the last reset, with every task created since then."""
        return msgspec.json.decode(self._request("GET", "/_emulator/stats"), type=EmulatorStats)

    def reset(self) -> None:
        """Zero the counters (tasks created before are left out of later stats)."""
        self._request("POST", "/_emulator/reset")

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the emulator process has used, where /proc exists."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        # Fields after the ")" that ends the command name: utime and stime are 14 and 15.
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
