"""What one failed attempt came to, and the decision that follows it (for ``Api``).

The decision itself is the pure policy's (:mod:`wavespeed_async._core.policy`); here it is
asked, a 429 starts the Client's shared cool-down, and a retry or a cool-down is told to
the Client's events.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from wavespeed_async._core import policy as _policy
from wavespeed_async._core.errors import WaveSpeedError
from wavespeed_async._core.policy import FailureKind
from wavespeed_async._core.settings import RetryConfig
from wavespeed_async._runtime.events import Events
from wavespeed_async._runtime.flow import FlowControl

__all__ = ["Attempt", "Deciding"]

log = logging.getLogger("wavespeed_async")


@dataclass(slots=True)
class Attempt:
    """What one HTTP attempt came to, when it did not succeed."""

    kind: FailureKind
    status: int | None = None
    retry_after_s: float | None = None
    error: WaveSpeedError | None = None
    task_id: str | None = None


class Deciding:
    """The retry decisions of ``Api`` (which sets these attributes)."""

    retry: RetryConfig
    rng: random.Random
    flow: FlowControl
    events: Events

    def _decide(
        self,
        policy: Callable[..., _policy.RetryDecision],
        out: Attempt,
        attempt: int,
        time_left_s: float | None,
        task_id: str | None,
        request: str,
        ref: int | None = None,
    ) -> _policy.RetryDecision:
        """Ask ``policy`` whether to retry; a 429 also starts the shared cool-down.

        A retry and a cool-down are told to the Client's events (``task_id``, ``request``
        and ``ref``: whose request, and which).
        """
        decision = policy(
            out.kind,
            status=out.status,
            retry_after_s=out.retry_after_s,
            attempt=attempt,
            config=self.retry,
            rng=self.rng,
            time_left_s=time_left_s,
        )
        if out.kind is FailureKind.STATUS and out.status == 429:
            self._note_rate_limit(out, decision.delay_s, task_id, ref)
        if decision.retry and self.events.active:
            cause = _policy.unknown_outcome_cause(out.kind, status=out.status)
            cause = "rate_limit" if out.status == 429 else cause
            self.events.retry(request, cause, attempt, decision.delay_s, out.status, task_id, ref)
        return decision

    def _note_rate_limit(
        self, out: Attempt, delay_s: float, task_id: str | None, ref: int | None
    ) -> None:
        wait = out.retry_after_s if out.retry_after_s is not None else delay_s
        wait = min(wait, self.retry.max_retry_after_s)
        if wait > 0:
            log.warning(
                "rate limited (429): every request waits %.2f s",
                wait,
                extra={"task_id": task_id} if task_id else None,
            )
            flow = self.flow
            started = flow.cooldowns_started
            flow.start_cooldown(wait)
            if flow.cooldowns_started != started and self.events.active:
                self.events.cooldown(wait, task_id=task_id, ref=ref)
