"""The submit of one job of a bulk run: its worker's state, and the hooks told of each send.

The hooks are told before each send and after an answer that proves no task was created (see
:mod:`wavespeed_async._runtime.attempts`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import anyio

from wavespeed_async._core.errors import SubmitSkipped, WaveSpeedError
from wavespeed_async._runtime.attempts import submit_attempts

__all__ = ["WorkerJob", "call_hook", "current_index", "current_job", "submit_in_flight"]


@dataclass(slots=True)
class WorkerJob:
    """One worker and the job it runs.

    Its scope is shielded: only the batch's teardown ends it (one scope per worker, not per
    job: entering and leaving an anyio scope costs more than a small job's own bookkeeping).
    """

    scope: anyio.CancelScope
    #: A submit was sent and no task id came back yet: cancelling now could lose a task.
    in_doubt: bool = False
    #: Called just before each send of the job's submit (``run_many(on_submitting=...)``);
    #: ``False`` from it: the job is not sent.
    on_sending: Callable[[], object] | None = None
    #: Called after an answer that proves no task was created (``on_not_sent``).
    on_not_sent: Callable[[], object] | None = None
    #: The input index of the job it runs (``None`` between jobs), for its events.
    index: int | None = None


async def call_hook(hook: Callable[[], object]) -> object:
    """Call a hook that may be sync or async; its result."""
    result = hook()
    if inspect.isawaitable(result):
        result = await result
    return result


def _left(job: WorkerJob) -> bool:
    """Whether the batch is being left (a function: its answer changes across awaits)."""
    return job.scope.cancel_called


class _Attempts:
    """The hooks of one job's submit (see :mod:`wavespeed_async._runtime.attempts`).

    They are what the job's store is told before each send, and after an answer that proves
    no task was created. A hook runs to its end even when the batch is left meanwhile (a
    store's write is never cut in half); the job is then not sent.
    """

    __slots__ = ("job",)

    def __init__(self, job: WorkerJob) -> None:
        self.job = job

    async def sending(self) -> None:
        job = self.job
        if job.scope.cancel_called:
            # The batch is being left: its cancellation reaches this task at its next
            # await, which would be the submit's own, with the request perhaps out.
            raise SubmitSkipped("not sent: the batch was left before this submit")
        hook = job.on_sending
        if hook is not None:
            with anyio.CancelScope(shield=True):
                sent = await call_hook(hook)
            # It may raise, or return False to skip the job: either way nothing is sent.
            if sent is False:
                raise SubmitSkipped("not sent: on_submitting declined the job")
            if _left(job):  # the batch was left while the hook ran
                await self.not_sent()
                raise SubmitSkipped("not sent: the batch was left before this submit")
        job.in_doubt = True

    async def not_sent(self) -> None:
        job = self.job
        job.in_doubt = False
        hook = job.on_not_sent
        if hook is not None:
            with anyio.CancelScope(shield=True):
                await call_hook(hook)


current_job: ContextVar[WorkerJob | None] = ContextVar("wavespeed_async_bulk_job", default=None)


def current_index() -> int | None:
    """The input index of the batch job running in this task, if any (for its events)."""
    job = current_job.get()
    return None if job is None else job.index


@contextmanager
def submit_in_flight() -> Iterator[None]:
    """Mark the enclosed request as a submit that may create a task (no-op outside a batch).

    Each send of it is told to the job's hooks (``on_submitting``, ``on_not_sent``); from a
    send until the job learns its task id (or the submit fails, or is answered in a way
    that proves no task exists), leaving the batch early gives the job a grace period
    instead of cancelling it at once.
    """
    job = current_job.get()
    if job is None:
        yield
        return
    token = submit_attempts.set(_Attempts(job))
    try:
        yield
    except anyio.get_cancelled_exc_class():
        raise  # cut off while sent: still in doubt
    except WaveSpeedError as exc:
        # Refused or lost: the error says which. An error naming a task stays in doubt
        # until the job reports that task as created.
        job.in_doubt = exc.task_id is not None
        raise
    except BaseException:
        job.in_doubt = False
        raise
    finally:
        submit_attempts.reset(token)
