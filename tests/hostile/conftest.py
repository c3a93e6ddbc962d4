"""Fixtures of the hostile-server suite: the server, and clients with short deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CANARY_KEY, fast_poll
from tests.hostile.server import HostileServer
from wavespeed_async import Client, RetryConfig, SizeLimits, Timeouts

#: Deadlines short enough that a trickle is cut within a second.
SHORT: Timeouts = Timeouts(connect_s=1.0, request_s=0.3, download_s=0.6, task_s=5.0)
#: Caps small enough that a flood is refused after a few chunks.
SMALL: SizeLimits = SizeLimits(max_answer_bytes=256 * 1024, max_download_bytes=512 * 1024)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def make_client(server: HostileServer, *, base_url: str | None = None, **kw: Any) -> Client:
    """A client of ``server`` with short deadlines, small caps and two attempts per GET."""
    options: dict[str, Any] = {
        "timeouts": SHORT,
        "sizes": SMALL,
        "retry": RetryConfig(
            max_attempts=2, backoff_base_s=0.001, max_backoff_s=0.01, max_retry_after_s=0.05
        ),
        "poll": fast_poll(),
        "seed": 3,
    }
    options.update(kw)
    return Client(CANARY_KEY, base_url=base_url or server.url, **options)
