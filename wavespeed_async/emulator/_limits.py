"""Account limits on new generations: per-minute rate and balance.

``Limits.submits_per_minute`` counts tasks created in a sliding 60 s window (each
submit pops the expired entries: amortised O(1)); ``enforce_balance`` refuses a submit
whose price exceeds the balance (HTTP 403, envelope code 402). ``Limits.max_running`` is
the task queue's (``_tasks``).
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal
from typing import Final

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._wire import EmulatedResponse, error

__all__ = ["INSUFFICIENT_BALANCE_CODE", "SubmitLimits"]

_RATE_WINDOW_S: Final = 60.0
#: The envelope ``code`` of a submit refused for want of money (the HTTP status is 403,
#: the API's "account problem"; this code tells it from other 403s).
INSUFFICIENT_BALANCE_CODE: Final = 402


class SubmitLimits:
    """Decides whether a valid submit may create a task."""

    def __init__(self, config: EmulatorConfig, scheduler: Scheduler, counters: Counters) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        self._window: deque[float] = deque()

    def refuse(self, price: Decimal, balance: Decimal) -> EmulatedResponse | None:
        """The 429 or 403 answer to a submit that costs ``price``, or ``None`` to go ahead."""
        limit = self._config.limits.submits_per_minute
        if limit is not None:
            now = self._scheduler.now()
            window = self._window
            while window and window[0] <= now - _RATE_WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                self._counters.rate_limited += 1
                retry = max(1, math.ceil(window[0] + _RATE_WINDOW_S - now))
                return error(
                    429,
                    f"rate limit exceeded: {limit} generations per minute",
                    {"Retry-After": str(retry)},
                )
        if self._config.enforce_balance and price > balance:
            self._counters.balance_refusals += 1
            return error(
                403,
                f"insufficient balance: this task costs ${price} and the balance is "
                f"${balance}; top up the account",
                code=INSUFFICIENT_BALANCE_CODE,
            )
        return None

    def record(self, created_at: float) -> None:
        """Count a task created at ``created_at`` against the per-minute rate."""
        if self._config.limits.submits_per_minute is not None:
            self._window.append(created_at)
