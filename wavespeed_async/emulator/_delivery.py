"""Webhook delivery: POSTs a finished task's signed prediction to its ``webhook`` URL.

One attempt per task, in the background; ``webhook_failure_rate`` drops some (recorded as
failures, never retried). Bodies are signed like WaveSpeed's (``webhook-*`` headers).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from wavespeed_async._core.webhooks import sign_webhook
from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._tasks import Task

__all__ = ["WebhookSender"]

logger = logging.getLogger("wavespeed_async.emulator")


class WebhookSender:
    """Sends the webhooks of finished tasks; ``render`` gives a task's JSON body."""

    def __init__(
        self,
        config: EmulatorConfig,
        scheduler: Scheduler,
        counters: Counters,
        render: Callable[[Task], bytes],
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        self._render = render
        self._rng = random.Random(f"{config.seed}:webhooks")
        digest = hashlib.sha256(f"wavespeed-emulator-secret:{config.seed}".encode()).hexdigest()
        #: The signing secret (``GET /api/v3/webhook/secret``).
        self.secret = "whsec_" + digest[:32]
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def on_finish(self, task: Task, finished: float) -> None:
        """Start the delivery of ``task`` (finished at ``finished``) if it has a webhook."""
        if task.webhook_url is None or self._scheduler.closing:
            return
        bg = self._scheduler.create_task(self._deliver(task, finished))
        self._background.add(bg)
        bg.add_done_callback(self._background.discard)

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the deliveries under way."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

    async def cancel(self) -> None:
        """Cancel the deliveries under way."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def close(self) -> None:
        """Close the HTTP session (a later delivery opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, task: Task, finished: float) -> None:
        url = task.webhook_url
        assert url is not None  # noqa: S101 - checked by on_finish
        drop = self._rng.random() < self._config.webhook_failure_rate
        webhook_id = f"{self._rng.getrandbits(128):032x}"
        if drop:
            self._failed(task)
            logger.info("webhook for task %s dropped (webhook_failure_rate)", task.id)
            return
        body = self._render(task)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(self.secret, webhook_id, timestamp, body),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            logger.info("webhook for task %s failed: %s", task.id, type(exc).__name__)
            ok = False
        if not ok:
            self._failed(task)
            return
        task.deliveries += 1
        self._counters.webhook_ok += 1
        if task.first_seen is None:
            manual = self._scheduler.manual is not None
            task.first_seen = finished if manual else self._scheduler.now()

    def _failed(self, task: Task) -> None:
        task.delivery_failures += 1
        self._counters.webhook_failed += 1
