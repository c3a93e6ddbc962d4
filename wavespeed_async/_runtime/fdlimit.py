"""Connection pools sized to the process's open-file limit (``ulimit -n``).

Every pooled connection is an open file. A Client has two pools (the API's and the
downloads'), each up to ``FlowLimits.max_connections``; past the limit the process gets
"Too many open files" (EMFILE) from wherever it next opens a file or a socket. So the pool
size is lowered, with a warning, to what the limit leaves after some headroom for the
rest of the process (journal, outputs, the event loop, the application's own files).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from wavespeed_async._core.settings import FlowLimits

__all__ = ["HEADROOM_MIN", "POOLS", "connections_allowed", "fit_to_file_limit", "open_file_limit"]

log = logging.getLogger("wavespeed_async")

#: Open files left to the rest of the process, at least (and at least a quarter of the limit).
HEADROOM_MIN: Final = 32
#: Connection pools of one Client, each up to ``max_connections``.
POOLS: Final = 2


def connections_allowed(
    requested: int, soft_limit: int | None, *, pools: int = POOLS, reserved: int = 0
) -> int:
    """The pool size to use: ``requested``, lowered to fit ``soft_limit`` open files.

    ``reserved`` files are held by something else of the Client (a share's connections).
    ``soft_limit`` ``None`` means no limit. The result is at least 1.
    """
    if soft_limit is None or soft_limit <= 0:
        return requested
    headroom = max(HEADROOM_MIN, soft_limit // 4)
    per_pool = (soft_limit - headroom - reserved) // pools
    return max(1, min(requested, per_pool))


def open_file_limit() -> int | None:
    """The process's soft limit on open files, or ``None`` (no limit, or not POSIX)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def fit_to_file_limit(limits: FlowLimits, *, reserved: int = 0) -> FlowLimits:
    """``limits`` with ``max_connections`` lowered to fit the open-file limit (warned).

    The limit is counted after ``reserved`` files held by something else of the Client.
    """
    soft = open_file_limit()
    allowed = connections_allowed(limits.max_connections, soft, reserved=reserved)
    if allowed == limits.max_connections:
        return limits
    log.warning(
        "max_connections lowered from %d to %d: this process may open only %s files "
        "(ulimit -n); raise that limit to use more connections",
        limits.max_connections,
        allowed,
        soft,
    )
    return dataclasses.replace(limits, max_connections=allowed)
