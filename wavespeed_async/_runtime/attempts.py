"""Hooks around each send of one submit, for a job store to record what was sent.

They let a job store record, before every send, that a request is going out, and after an
answer that proves no task was created, that the job is re-sendable again.

``Api.submit`` sends a submit, and sends it again only when the answer proves that no task
was created (a 429, a 503 with ``Retry-After``, a connect failure). A bulk run sets
:data:`submit_attempts` for the submit of each of its jobs (``run_many``'s
``on_submitting`` / ``on_not_sent``), so that a process that dies while it waits out a 429
leaves the job re-sendable rather than "a task may exist".
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["SubmitAttempts", "submit_attempts"]


class SubmitAttempts(Protocol):
    """Told about each send of one submit."""

    async def sending(self) -> None:
        """Just before each send; raises (``SubmitSkipped``, say) to send nothing."""

    async def not_sent(self) -> None:
        """After an answer that proves no task was created.

        Called before a re-send, or before the refusal is raised.
        """


#: The hooks of the submit made in this context (a job of a bulk run), if any.
submit_attempts: ContextVar[SubmitAttempts | None] = ContextVar(
    "wavespeed_async_submit_attempts", default=None
)
