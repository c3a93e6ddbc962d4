"""What one job of a bulk run does: run an input, or wait for a task id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.requests import TypedRequest
from wavespeed_async._runtime.budget import BATCH_BUDGET

if TYPE_CHECKING:
    from wavespeed_async._facade.tasks import Tasks, Unset
    from wavespeed_async._runtime.budget import Budget

__all__ = ["Job", "run_job", "wait_job"]

#: A job of a :class:`~wavespeed_async.BulkRun`: ``(index, item, created)`` -> the task,
#: ended; ``created(task_id)`` is told (and awaited) each id the moment it exists.
Created = Callable[[str], Awaitable[None]]
Job = Callable[[int, Any, Created], Awaitable[Prediction]]


def job_request(
    model: str | None, index: int, item: Any
) -> tuple[str | TypedRequest, Mapping[str, Any] | None]:
    """The model (or typed request) and input of one item of ``run_many``'s inputs."""
    if isinstance(item, TypedRequest):
        return item, None
    if isinstance(item, Mapping):
        if model is None:
            raise ValidationError(
                "model", f"inputs[{index}]: a dict input needs run_many(model, ...)"
            )
        return model, item
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], Mapping)
    ):
        return item[0], item[1]
    raise ValidationError(
        "inputs",
        f"inputs[{index}]: {type(item).__name__} is not allowed; allowed: a dict of inputs, "
        "a (model, dict) pair or a typed request",
    )


def run_job(
    client: Tasks,
    model: str | None,
    *,
    timeout: float | Unset | None,
    webhook: str | None,
    budget: Budget | None = None,
) -> Job:
    """The job of ``run_many``: submit the item, then wait for its task.

    Before the submit, its quote is reserved against ``budget``, the batch's.
    """

    async def job(index: int, item: Any, created: Created) -> Prediction:
        job_model, job_input = job_request(model, index, item)
        return await client._run_one(
            job_model, job_input, timeout=timeout, webhook=webhook, sync=False, on_created=created
        )

    if budget is None:
        return job

    async def budgeted(index: int, item: Any, created: Created) -> Prediction:
        token = BATCH_BUDGET.set(budget)
        try:
            return await job(index, item, created)
        finally:
            BATCH_BUDGET.reset(token)

    return budgeted


def wait_job(client: Tasks, *, timeout: float | Unset | None) -> Job:
    """The job of ``wait_many``: wait for the task id, holding an in-flight slot."""

    async def job(index: int, task_id: Any, created: Created) -> Prediction:
        check_task_id(task_id, f"task_ids[{index}]")
        await created(task_id)
        flow = client.flow
        token = object()
        await flow.acquire_slot(token)
        try:
            return await client.wait(task_id, timeout=timeout)
        finally:
            flow.release_slot(token)

    return job
