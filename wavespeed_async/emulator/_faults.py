"""Fault injection: which fault a request gets, and how that fault is carried out.

Each submit and each poll draws from its own seeded stream (``EmulatorConfig.seed``),
unless a test forced the next faults with ``Emulator.force_fault``. A fault answers 429,
a 5xx or a truncated JSON body, raises a connection reset (``ResetBeforeRequest`` before a
submit's task exists, ``ResetAfterRequest`` after it, and on polls), or holds the answer
for ``stall_s``.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Final

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._wire import (
    EmulatedResponse,
    ResetAfterRequest,
    ResetBeforeRequest,
    encode,
    error,
    shutting_down,
)

__all__ = ["FaultInjector"]

_BAD_GATEWAY_HTML: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
# Fault field name -> (kind as stats report it, phase on submits).
_FAULTS: Final[dict[str, tuple[str, str]]] = {
    "rate_limit": ("rate_limit", "before"),
    "server_error_before": ("server_error", "before"),
    "server_error_after": ("server_error", "after"),
    "reset_before": ("reset", "before"),
    "reset_after": ("reset", "after"),
    "malformed": ("malformed", "after"),
    "stall_before": ("stall", "before"),
    "stall_after": ("stall", "after"),
}
_POLL_ALIASES: Final = {
    "server_error": "server_error_before",
    "reset": "reset_before",
    "stall": "stall_before",
}


class FaultInjector:
    """Draws faults for submits and polls, and carries them out."""

    def __init__(self, config: EmulatorConfig, scheduler: Scheduler, counters: Counters) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        seed = config.seed
        self._rng = {
            "submit": random.Random(f"{seed}:submit-faults"),
            "poll": random.Random(f"{seed}:poll-faults"),
        }
        # The configs are frozen: list each one's rates once, in drawing order.
        self._rates = {"submit": config.submit_faults.items(), "poll": config.poll_faults.items()}
        self._forced: dict[str, deque[str]] = {"submit": deque(), "poll": deque()}
        # Picks the 500/502/503 variant of the next server error (of any request).
        self._code_draw = 0.0

    def force(self, kind: str, on: str, times: int) -> None:
        """See ``Emulator.force_fault``."""
        if on not in self._forced:
            raise ValueError(f"on: {on!r}; allowed: 'submit' or 'poll'")
        if on == "poll":
            kind = _POLL_ALIASES.get(kind, kind)
        if kind not in _FAULTS:
            raise ValueError(f"kind: {kind!r} is unknown; allowed: one of {', '.join(_FAULTS)}")
        if times < 0:
            raise ValueError("times: must be >= 0")
        self._forced[on].extend([kind] * times)

    def draw(self, on: str) -> tuple[str, str]:
        """``(kind, submit phase)`` of this request's fault; ``("", "")`` for none.

        Always draws two numbers, so sequences repeat whatever was forced.
        """
        rng = self._rng[on]
        u = rng.random()
        self._code_draw = rng.random()
        forced = self._forced[on]
        if forced:
            return _FAULTS[forced.popleft()]
        edge = 0.0
        for name, rate in self._rates[on]:
            edge += rate
            if u < edge:
                return _FAULTS[name]
        return "", ""

    async def carry_out(self, kind: str, phase: str) -> EmulatedResponse | None:
        """Count fault ``kind`` under ``phase`` and carry it out.

        Returns the answer that replaces the normal one, or ``None`` when the request goes
        on: no fault, a stall that ended, or ``malformed`` (the caller truncates its
        payload with ``malformed()``). Raises a reset.
        """
        if not kind:
            return None
        self._counters.count_fault(kind, phase)
        if kind == "rate_limit":
            retry = {"Retry-After": str(self._config.retry_after_s)}
            return error(429, "too many requests", retry)
        if kind == "server_error":
            return self._server_error(retry_after=phase != "after")
        if kind == "reset":
            if phase == "before":
                raise ResetBeforeRequest("connection reset before the request was read")
            raise ResetAfterRequest("connection reset; the answer is lost")
        if kind == "stall":
            if not await self._scheduler.sleep(self._config.stall_s):
                return shutting_down()
            self._scheduler.run_due()
        return None

    def _server_error(self, *, retry_after: bool) -> EmulatedResponse:
        v = self._code_draw
        if v < 1 / 3:
            return error(500, "internal server error")
        if v < 2 / 3:
            return EmulatedResponse(502, {"Content-Type": "text/html"}, _BAD_GATEWAY_HTML)
        headers = {"Retry-After": str(self._config.retry_after_s)} if retry_after else None
        return error(503, "service unavailable", headers)

    @staticmethod
    def malformed(payload: dict[str, Any]) -> EmulatedResponse:
        """A 200 whose JSON body is cut in half."""
        full = encode(payload)
        return EmulatedResponse(
            200, {"Content-Type": "application/json"}, full[: max(1, len(full) // 2)]
        )
