"""``POST /api/v3/predictions``: the account's task history, newest first, kept 7 days.

Ages are measured on the emulator's clock, so a ``ManualClock`` can age tasks out. Deleted
tasks are not listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._tasks import Task, TaskEngine
from wavespeed_async.emulator._wire import (
    EmulatedResponse,
    Request,
    envelope,
    error,
    json_object,
    json_reply,
    paging,
    time_field,
)

__all__ = ["HISTORY_DAYS", "History"]

#: How long tasks stay in the history.
HISTORY_DAYS: Final = 7
_STATUSES: Final = ("created", "processing", "completed", "failed", "cancelled", "timeout")
_ITEM_FIELDS: Final = ("id", "model", "status", "outputs", "created_at", "executionTime", "error")


class History:
    """Lists tasks a page at a time, filtered by time, model and status."""

    def __init__(
        self,
        scheduler: Scheduler,
        tasks: TaskEngine,
        render: Callable[[Task, str], dict[str, Any]],
        epoch: float,
    ) -> None:
        self._scheduler = scheduler
        self._tasks = tasks
        self._render = render
        self._epoch = epoch

    async def search(self, request: Request) -> EmulatedResponse:
        body = await json_object(
            request,
            "{page, page_size, created_after, created_before, model, status}",
            empty_ok=True,
        )
        if isinstance(body, EmulatedResponse):
            return body
        paged = paging(body)
        if isinstance(paged, EmulatedResponse):
            return paged
        page, size = paged
        after, before = time_field(body, "created_after"), time_field(body, "created_before")
        if isinstance(after, EmulatedResponse):
            return after
        if isinstance(before, EmulatedResponse):
            return before
        model = body.get("model") or None
        if model is not None and not isinstance(model, str):
            return error(400, "model: expected a model id (a string)")
        status = body.get("status") or None
        if status is not None and status not in _STATUSES:
            allowed = ", ".join(repr(s) for s in _STATUSES)
            return error(400, f"status: {status!r:.40}; allowed: one of {allowed}")
        epoch = self._epoch
        oldest = self._scheduler.now() - HISTORY_DAYS * 86400.0
        skip, items = (page - 1) * size, []
        for task in reversed(self._tasks.tasks.values()):
            if task.created_at < oldest:
                break  # older still from here on
            wall = epoch + task.created_at
            if (
                task.deleted
                or (after is not None and wall < after)
                or (before is not None and wall > before)
                or (model is not None and task.model != model)
                or (status is not None and task.status != status)
            ):
                continue
            if skip:
                skip -= 1
                continue
            items.append(self._item(task, request.base))
            if len(items) == size:
                break
        return json_reply(200, envelope({"page": page, "items": items}))

    def _item(self, task: Task, base: str) -> dict[str, Any]:
        full = self._render(task, base)
        item = {name: full[name] for name in _ITEM_FIELDS}
        item["input"] = task.input
        return item
