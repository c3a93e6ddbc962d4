"""The test services themselves: a real redis-server that starts, answers and restarts."""

from __future__ import annotations

import pytest
import redis as redis_py

from tests.services import RedisServer

pytestmark = pytest.mark.e2e


def test_redis_server_answers_and_restarts_on_the_same_port(redis: RedisServer) -> None:
    r = redis_py.Redis.from_url(redis.url)
    try:
        r.set("k", "v")
        assert r.get("k") == b"v"
        pid = redis.proc.pid if redis.proc else None
        redis.stop()
        redis.start()
        assert redis.proc is not None and redis.proc.pid != pid
        # A fresh server with no persistence: the key is gone, the port is the same.
        assert r.get("k") is None
    finally:
        r.close()
