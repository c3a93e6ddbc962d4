"""Where a run happened: the machine, the interpreter, the package versions, the commit."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
from pathlib import Path

__all__ = ["machine_info"]

_PACKAGES = ("wavespeed-async", "wavespeed", "aiohttp", "msgspec", "anyio", "requests", "urllib3")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    if name == "wavespeed-async":  # run from a checkout without installing it
        import wavespeed_async

        return f"{wavespeed_async.__version__} (source tree)"
    return None


def _commit(root: Path) -> str | None:
    """The checked-out commit, read from ``.git`` without running git."""
    git = root / ".git"
    try:
        if git.is_file():  # a linked worktree: ".git" names its own git directory
            git = (
                root / git.read_text(encoding="ascii").strip().removeprefix("gitdir: ")
            ).resolve()
        # Branches live in the common git directory (the main one, for a worktree).
        common = (
            git / (git / "commondir").read_text(encoding="ascii").strip()
            if (git / "commondir").exists()
            else git
        )
        head = (git / "HEAD").read_text(encoding="ascii").strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = common / ref
        if loose.exists():
            return loose.read_text(encoding="ascii").strip()
        for line in (common / "packed-refs").read_text(encoding="ascii").splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except (OSError, ValueError):
        return None
    return None


def machine_info(root: Path) -> dict[str, object]:
    """A JSON-ready description of this machine and run."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in _PACKAGES},
        "commit": _commit(root),
        "load_average_at_start": list(load) if load else None,
    }
