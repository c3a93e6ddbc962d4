"""Tasks: their server-side records and their life cycle on the scheduler.

A task is charged when it is ``created`` (queued for its drawn queue time), then
``processing`` once a running slot is free (``Limits.max_running``; otherwise it waits in
FIFO order), then ``completed`` or ``failed`` (and refunded) after its inference time.
Prompt directives (``[fail:CODE]``, ``[latency:MS]``, ``[nsfw]``) force an outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from wavespeed_async.emulator._billing import Ledger
from wavespeed_async.emulator._catalogue import EmulatedModel
from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._png import output_size
from wavespeed_async.emulator._scheduler import Scheduler, Wake
from wavespeed_async.emulator._stats import Counters, TaskRecord

__all__ = ["Task", "TaskEngine", "error_text", "parse_directives"]

logger = logging.getLogger("wavespeed_async.emulator")

_DIRECTIVE_RE: Final = re.compile(r"\[(fail|latency|nsfw)(?::([^\]]*))?\]", re.IGNORECASE)
#: ``failure_rate`` failures: (upper edge of a uniform draw, code).
_RANDOM_FAIL_CODES: Final = ((0.6, 5000), (0.85, 1403), (1.0, 5003))
_ERROR_TEXT: Final = {
    1200: "content moderation: the request was flagged",
    1400: "missing parameter",
    1401: "invalid parameter",
    1402: "input media URL is unreachable",
    1403: "task failed",
    1405: "task failed",
    5000: "internal error",
    5003: "service unavailable",
    5004: "timeout",
}
_TERMINAL: Final = ("completed", "failed", "deleted")


def error_text(code: int | None) -> str:
    return _ERROR_TEXT.get(code or 0, "task failed")


def parse_directives(prompt: str) -> tuple[int | None, float | None, bool]:
    """``(fail code, forced latency in seconds, nsfw)`` from the prompt's directives."""
    fail: int | None = None
    latency: float | None = None
    nsfw = False
    for m in _DIRECTIVE_RE.finditer(prompt):
        name, arg = m.group(1).lower(), m.group(2)
        if name == "fail":
            fail = 5000
            if arg is not None and arg.strip().isascii() and arg.strip().isdigit():
                fail = int(arg.strip())
        elif name == "latency" and arg is not None:
            with contextlib.suppress(ValueError):
                value = float(arg.strip())
                if math.isfinite(value) and value >= 0:
                    latency = value / 1000.0
        elif name == "nsfw":
            nsfw = True
    return fail, latency, nsfw


class Task:
    """Server-side state of one task; kept small (benchmarks create tens of thousands)."""

    __slots__ = (
        "base64",
        "code",
        "created_at",
        "deleted",
        "deliveries",
        "delivery_failures",
        "dropped",
        "finished_at",
        "first_seen",
        "height",
        "id",
        "inference_s",
        "input",
        "model",
        "nsfw",
        "num_images",
        "order_uuid",
        "origin_price",
        "output",
        "polls",
        "price",
        "prompt",
        "queue_s",
        "refunded",
        "seed",
        "started_at",
        "status",
        "waiters",
        "webhook_url",
        "width",
    )

    def __init__(self, task_id: str, model: str, prompt: str, created_at: float) -> None:
        self.id = task_id
        self.model = model
        self.prompt = prompt
        self.created_at = created_at
        self.status = "created"
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.first_seen: float | None = None
        self.polls = 0
        self.deliveries = 0
        self.delivery_failures = 0
        self.code: int | None = None
        self.num_images = 1
        self.width = 1024
        self.height = 1024
        self.seed = 0
        self.nsfw = False
        self.base64 = False
        self.deleted = False
        self.queue_s = 0.0
        self.inference_s = 0.0
        self.webhook_url: str | None = None
        self.waiters: list[asyncio.Future[Wake]] | None = None
        #: The inputs the task runs with (unknown keys dropped), and the dropped keys.
        self.input: dict[str, Any] = {}
        self.dropped: tuple[str, ...] = ()
        #: ``image`` (PNG outputs) or ``video`` (MP4 outputs).
        self.output = "image"
        self.price = Decimal(0)
        self.origin_price = Decimal(0)
        self.order_uuid = ""
        self.refunded = False

    @property
    def visible_status(self) -> str:
        return "deleted" if self.deleted else self.status

    @property
    def extension(self) -> str:
        """The file extension of the outputs (``.png`` or ``.mp4``)."""
        return ".mp4" if self.output == "video" else ".png"

    def output_index(self, name: str) -> int | None:
        """The index of output ``name`` (``N`` or ``N.png``/``N.mp4``) if it can be downloaded."""
        index = name.removesuffix(self.extension)
        if self.visible_status != "completed" or not (index.isascii() and index.isdigit()):
            return None
        n = int(index)
        return n if n < self.num_images else None

    def seen(self, now: float) -> None:
        """A client was just shown the task: note when it first saw a terminal status."""
        if self.first_seen is None and self.visible_status in _TERMINAL:
            self.first_seen = now

    def record(self) -> TaskRecord:
        return TaskRecord(
            id=self.id,
            model=self.model,
            prompt=self.prompt,
            status=self.visible_status,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            first_seen_finished_at=self.first_seen,
            polls=self.polls,
            webhook_deliveries=self.deliveries,
            webhook_failures=self.delivery_failures,
            code=self.code if self.status == "failed" else None,
            error=error_text(self.code) if self.status == "failed" else "",
            num_images=self.num_images,
            width=self.width,
            height=self.height,
            seed=self.seed,
            webhook_url=self.webhook_url,
            output=self.output,
            dropped_inputs=self.dropped,
            price=self.price,
            refunded=self.refunded,
        )


class TaskEngine:
    """All tasks by id, the ``max_running`` queue, and the ledger they are billed to."""

    def __init__(
        self,
        config: EmulatorConfig,
        scheduler: Scheduler,
        counters: Counters,
        rng_ids: random.Random,
        ledger: Ledger,
        on_finish: Callable[[Task, float], None],
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        self._rng_ids = rng_ids
        self._rng = random.Random(f"{config.seed}:tasks")
        self._on_finish = on_finish
        self.ledger = ledger
        self.tasks: dict[str, Task] = {}
        self.waiting: deque[Task] = deque()
        self.running = 0

    def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    def output(self, task_id: str, name: str) -> tuple[Task, int] | None:
        """The task and image index behind ``/media/outputs/{task_id}/{name}``, if any."""
        task = self.tasks.get(task_id)
        if task is None:
            return None
        index = task.output_index(name)
        return None if index is None else (task, index)

    def delete(self, task_ids: list[str]) -> None:
        """Mark tasks deleted (they still run to the end; unknown ids are ignored)."""
        for task_id in task_ids:
            task = self.tasks.get(task_id)
            if task is not None:
                task.deleted = True

    def _new_id(self) -> str:
        while True:
            task_id = f"{self._rng_ids.getrandbits(128):032x}"
            if task_id not in self.tasks:
                return task_id

    def create(
        self,
        model: str,
        entry: EmulatedModel | None,
        inputs: dict[str, Any],
        dropped: tuple[str, ...],
        price: tuple[Decimal, Decimal],
        webhook: str | None,
        reachable: Callable[[str], bool],
    ) -> Task:
        """A new task for a checked submit, charged ``price`` (``(origin, discounted)``).

        ``entry`` is the model's catalogue entry (``None`` outside the catalogue), whose
        defaults fill in what ``inputs`` leave out; ``reachable`` judges an input ``image``.
        """
        now = self._scheduler.now()
        run = _with_defaults(entry, inputs)
        prompt = run.get("prompt")
        image = run.get("image")
        if not isinstance(prompt, str):
            # A model without a prompt (the upscaler): its input image identifies the job.
            prompt = image if isinstance(image, str) else ""
        task = Task(self._new_id(), model, prompt, now)
        # Always draw the same number of values per task, so runs repeat.
        rng = self._rng
        queue_s, inference_s = self._config.latency.for_model(model).draw(rng)
        fail_u, code_u, seed_draw = rng.random(), rng.random(), rng.randrange(10_000_000_000)
        inference_s *= _latency_factor(entry, run)
        fail, latency, nsfw = parse_directives(prompt)
        if latency is not None:
            queue_s, inference_s = latency * 0.1, latency * 0.9
        if fail is None and fail_u < self._config.failure_rate:
            fail = next(code for edge, code in _RANDOM_FAIL_CODES if code_u < edge)
        if fail is None and isinstance(image, str) and not reachable(image):
            fail = 1402
        task.code = fail
        task.queue_s, task.inference_s = queue_s, inference_s
        task.nsfw = nsfw
        task.base64 = run.get("enable_base64_output") is True
        task.input = inputs
        task.dropped = dropped
        if entry is not None and entry.output == "video":
            task.output = "video"
        if entry is None or entry.pricing == "per_image":
            num = run.get("num_images", 1)
            task.num_images = num if isinstance(num, int) and 1 <= num <= 10 else 1
        task.width, task.height = output_size(run)
        seed = run.get("seed")
        task.seed = seed if isinstance(seed, int) and seed >= 0 else seed_draw
        task.webhook_url = webhook
        task.origin_price, task.price = price
        self.tasks[task.id] = task
        self.ledger.charge(task, now)
        self._counters.charged_usd += task.price
        self._counters.count_task(task)
        self._scheduler.at(now + queue_s, lambda t: self._ready(t, task))
        logger.debug("task %s created (%s)", task.id, model)
        return task

    def _ready(self, t: float, task: Task) -> None:
        limit = self._config.limits.max_running
        if limit is not None and self.running >= limit:
            self.waiting.append(task)
        else:
            self._start(t, task)

    def _start(self, t: float, task: Task) -> None:
        task.status = "processing"
        task.started_at = t
        self.running += 1
        self._counters.max_running = max(self._counters.max_running, self.running)
        self._scheduler.at(t + task.inference_s, lambda t2: self._finish(t2, task))

    def _finish(self, t: float, task: Task) -> None:
        task.finished_at = t
        self.running -= 1
        if task.code is not None:
            task.status = "failed"
            self._counters.failed += 1
            self.ledger.refund(task, t)
            self._counters.refunded_usd += task.price
        else:
            task.status = "completed"
            self._counters.completed += 1
        logger.debug("task %s %s", task.id, task.status)
        if task.waiters:
            for fut in task.waiters:
                if not fut.done():
                    fut.set_result("done")
            task.waiters = None
        self._on_finish(task, t)
        if self.waiting:
            self._start(t, self.waiting.popleft())


def _with_defaults(entry: EmulatedModel | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` with the schema's defaults filled in (what the task runs with)."""
    if entry is None:
        return dict(inputs)
    run = {
        name: prop["default"]
        for name, prop in entry.properties.items()
        if "default" in prop and name not in ("prompt", "image")
    }
    run.update(inputs)
    return run


def _latency_factor(entry: EmulatedModel | None, run: Mapping[str, Any]) -> float:
    """How much longer than its profile a task runs: videos scale with their duration."""
    if entry is None or entry.pricing != "per_second":
        return 1.0
    duration, default = run.get("duration"), entry.default("duration")
    if not isinstance(duration, (int, float)) or not isinstance(default, (int, float)):
        return 1.0
    return float(duration) / float(default) if default > 0 else 1.0
