"""The prediction endpoints (submit, poll, delete) and the prediction JSON they carry.

A submit is checked (API key, model path, body against the model's schema, webhook,
limits and balance), may be hit by a fault before or after its task is created, and with
``enable_sync_mode`` is held until the task ends or ``sync_wait_s`` passes. Input keys the
model does not take are dropped without a word, as the API does: the task runs (and is
billed) with the defaults. Webhooks carry the same prediction shape as polls.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from wavespeed_async.emulator._billing import Pricing
from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._faults import FaultInjector
from wavespeed_async.emulator._limits import SubmitLimits
from wavespeed_async.emulator._mp4 import MP4
from wavespeed_async.emulator._png import ImageCache
from wavespeed_async.emulator._scheduler import Scheduler, Wake
from wavespeed_async.emulator._schema import check_inputs, check_passthrough
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._tasks import Task, TaskEngine, error_text
from wavespeed_async.emulator._wire import (
    EmulatedResponse,
    Request,
    authorized,
    envelope,
    error,
    iso,
    json_object,
    json_reply,
    shutting_down,
    unauthorized,
)

__all__ = ["Predictions", "output_bytes", "render_prediction"]

#: First path segments that belong to the API itself, never to a model owner.
_RESERVED = frozenset(
    {"predictions", "media", "balance", "webhook", "model", "models", "billings", "user"}
)


def output_bytes(task: Task, index: int, images: ImageCache) -> bytes:
    """The file of output ``index`` of ``task``: a PNG, or the fixed MP4 of a video."""
    if task.output == "video":
        return MP4
    return images.get(task.prompt, task.seed, index, task.width, task.height)


def render_prediction(task: Task, base: str, epoch: float, images: ImageCache) -> dict[str, Any]:
    """The API's prediction object for ``task``; URLs start with ``base``.

    ``epoch`` is the wall-clock time of the emulator clock's zero.
    """
    status = task.visible_status
    outputs: list[str] = []
    nsfw: list[bool] | None = None
    inference: int | None = None
    error_message = ""
    if task.finished_at is not None:
        assert task.started_at is not None  # noqa: S101 - set before finished_at
        inference = round(task.inference_s * 1000)
        nsfw = []
    if status == "completed":
        if task.base64:
            outputs = [
                base64.b64encode(output_bytes(task, n, images)).decode()
                for n in range(task.num_images)
            ]
        else:
            ext = task.extension
            outputs = [f"{base}/media/outputs/{task.id}/{n}{ext}" for n in range(task.num_images)]
        nsfw = [task.nsfw] * task.num_images
    elif status == "failed":
        error_message = error_text(task.code)
    data: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "outputs": outputs,
        "urls": {"get": f"{base}/api/v3/predictions/{task.id}/result"},
        "has_nsfw_contents": nsfw,
        "status": status,
        "created_at": iso(epoch + task.created_at),
        "error": error_message,
        "timings": {"inference": inference},
        "executionTime": (
            round((task.finished_at - task.created_at) * 1000)
            if task.finished_at is not None
            else 0
        ),
    }
    if status == "failed":
        data["code"] = task.code
    return data


class Predictions:
    """``POST /api/v3/{model}``, ``GET /api/v3/predictions/{id}[/result]`` and delete."""

    def __init__(
        self,
        config: EmulatorConfig,
        scheduler: Scheduler,
        counters: Counters,
        tasks: TaskEngine,
        pricing: Pricing,
        faults: FaultInjector,
        limits: SubmitLimits,
        render: Callable[[Task, str], dict[str, Any]],
        reachable: Callable[[str, str], bool],
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        self._tasks = tasks
        self._pricing = pricing
        self._faults = faults
        self._limits = limits
        self._render = render
        self._reachable = reachable

    async def submit(self, request: Request) -> EmulatedResponse:
        self._counters.submits_received += 1  # refused ones too: checked here, not guarded
        if not authorized(request, self._config.api_key):
            return unauthorized()
        model = request.match["model"].strip("/")
        segments = model.split("/")
        if not 2 <= len(segments) <= 3 or not all(segments) or segments[0] in _RESERVED:
            # The API's own endpoints are not model owners: POST /api/v3/predictions/x is a
            # 404, not a task.
            return error(404, f"model {model!r} not found")
        entry = self._pricing.model(model)
        if entry is None and not self._config.accept_unknown_models:
            return error(404, f"model {model!r} not found")
        kind, phase = self._faults.draw("submit")
        if phase == "before":
            answer = await self._faults.carry_out(kind, phase)
            if answer is not None:
                return answer
        body = await json_object(request, "of model inputs")
        if isinstance(body, EmulatedResponse):
            return body
        checked = check_inputs(entry, body) if entry is not None else check_passthrough(body)
        if checked.problem is not None:
            return error(400, checked.problem)
        webhook = request.query.get("webhook")
        if webhook is not None:
            parts = urlsplit(webhook)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return error(400, f"webhook: {webhook!r:.80} is not an http(s) URL")
            if body.get("enable_base64_output") is True:
                return error(
                    400, "enable_base64_output: cannot be combined with a webhook; allowed: false"
                )
        inputs = checked.inputs
        price = self._pricing.price(model, inputs)
        refusal = self._limits.refuse(price[1], self._tasks.ledger.balance)
        if refusal is not None:
            return refusal
        base = request.base
        host = request.host
        task = self._tasks.create(
            model,
            entry,
            inputs,
            checked.dropped,
            price,
            webhook,
            lambda url: self._reachable(url, host),
        )
        self._limits.record(task.created_at)
        sync_timed_out = False
        if inputs.get("enable_sync_mode") is True and task.status not in ("completed", "failed"):
            woke = await self._hold(task)
            if woke == "closing":
                return shutting_down()
            self._scheduler.run_due()
            sync_timed_out = woke == "timeout"
        data = self._render(task, base)
        data["input"] = task.input
        payload = envelope(data)
        if sync_timed_out:
            self._counters.sync_timeouts += 1
            data["status"] = "processing"
            data["code"] = 5004
            payload = envelope(data, 5004, "timeout: the task is still running; poll its id")
        if phase == "after":
            answer = await self._faults.carry_out(kind, phase)
            if answer is not None:
                return answer
            if kind == "malformed":
                return self._faults.malformed(payload)
        if not sync_timed_out:
            task.seen(self._scheduler.now())
        return json_reply(200, payload)

    async def _hold(self, task: Task) -> Wake:
        """Wait until ``task`` ends (``"done"``), ``sync_wait_s`` passes, or we close."""
        fut = self._scheduler.future()
        if task.waiters is None:
            task.waiters = []
        task.waiters.append(fut)
        self._scheduler.time_out(fut, self._config.sync_wait_s)
        return await fut

    async def poll(self, request: Request) -> EmulatedResponse:
        task_id = request.match["id"]
        task = self._tasks.get(task_id)
        if task is not None:
            task.polls += 1
            self._counters.polls_total += 1
        kind, _ = self._faults.draw("poll")
        answer = await self._faults.carry_out(kind, "poll")
        if answer is not None:
            return answer
        if task is None:
            return error(404, f"prediction {task_id!r:.80} not found")
        data = self._render(task, request.base)
        if self._config.echo_input:
            data["input"] = task.input
        payload = envelope(data)
        if kind == "malformed":
            return self._faults.malformed(payload)
        task.seen(self._scheduler.now())
        return json_reply(200, payload)

    async def delete(self, request: Request) -> EmulatedResponse:
        body = await json_object(request, '{"ids": [...]}')
        if isinstance(body, EmulatedResponse):
            return body
        ids = body.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return error(400, "ids: expected a list of task ids")
        self._tasks.delete(ids)
        return json_reply(200, envelope(None))
