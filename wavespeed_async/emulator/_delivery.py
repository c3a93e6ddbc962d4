"""Webhook delivery: POSTs a finished task's signed prediction to its ``webhook`` URL.

One attempt per task, in the background; ``webhook_failure_rate`` drops some (recorded as
failures, never retried). Bodies are signed like WaveSpeed's (``webhook-*`` headers).
Unless ``webhook_any_host`` is set, only loopback hosts receive deliveries: a URL copied
from an example (``https://myapp.example.com/hook``) must never get a request from a test.
A refused or failed delivery is one WARNING line naming the task and the reason (the URL's
host at most: a URL can carry a token).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._stats import Counters
from wavespeed_async.emulator._tasks import Task

__all__ = ["WebhookSender", "is_loopback", "sign"]

logger = logging.getLogger("wavespeed_async.emulator")


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v3,`` + hex HMAC-SHA256 of ``id.timestamp.body``.

    The key is the secret without its ``whsec_`` prefix, used as text (not base64-decoded).
    """
    key = secret.removeprefix("whsec_").encode()
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return "v3," + hmac.new(key, message, hashlib.sha256).hexdigest()


def is_loopback(host: str | None) -> bool:
    """``localhost`` (or a name under ``.localhost``), 127.0.0.0/8 or ::1."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSender:
    """Sends the webhooks of finished tasks; ``render`` gives a task's JSON body."""

    def __init__(
        self,
        config: EmulatorConfig,
        scheduler: Scheduler,
        counters: Counters,
        render: Callable[[Task], bytes],
        rng_ids: random.Random,
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._counters = counters
        self._render = render
        self._rng = random.Random(f"{config.seed}:webhooks")
        # Delivery ids differ between emulator runs, like task ids: a receiver that
        # de-duplicates by webhook-id must not drop a restarted emulator's deliveries.
        self._rng_ids = rng_ids
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
        self._rng.getrandbits(128)  # keeps the drop draws of a seed as they were
        webhook_id = f"{self._rng_ids.getrandbits(128):032x}"
        if drop:
            self._failed(task)
            logger.info("webhook for task %s dropped (webhook_failure_rate)", task.id)
            return
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not self._config.webhook_any_host and not is_loopback(host):
            self._failed(task)
            self._counters.webhook_refused += 1
            logger.warning(
                "webhook for task %s not delivered: host %r is not a loopback address "
                "(allow any host with webhook_any_host / --webhook-any-host)",
                task.id,
                host,
            )
            return
        body = self._render(task)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.secret, webhook_id, timestamp, body),
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0))
        reason = ""
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if not 200 <= resp.status < 300:
                    reason = f"the receiver answered HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # The exception's text can quote the URL: name only its type.
            reason = type(exc).__name__
        if reason:
            self._failed(task)
            logger.warning("webhook for task %s failed (host %r): %s", task.id, host, reason)
            return
        task.deliveries += 1
        self._counters.webhook_ok += 1
        if task.first_seen is None:
            manual = self._scheduler.manual is not None
            task.first_seen = finished if manual else self._scheduler.now()

    def _failed(self, task: Task) -> None:
        task.delivery_failures += 1
        self._counters.webhook_failed += 1
