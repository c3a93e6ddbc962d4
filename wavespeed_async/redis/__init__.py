"""Account-wide limits and webhook wake-ups shared through Redis (or Valkey).

``pip install 'wavespeed-async[redis]'``, then give every process of one account the same
share::

    client = Client(limits=FlowLimits.for_tier("gold"), share="redis://redis:6379/0")
    client = Client(share=RedisShare("redis://redis:6379/0", namespace="prod"))

Every Client with the same server and namespace shares the in-flight cap (as leases), the
tasks-per-minute window, the 429 cool-down, the poll budget, and webhook deliveries: a
``client.deliver(pred)`` in any process wakes the wait for that task in whichever process
holds it. See ``docs/scaling.md`` for the recipes, lease expiry and outage behaviour.
"""

from __future__ import annotations

from wavespeed_async._core.install import install_command

try:
    import redis  # noqa: F401 - only checks that the extra is installed
except ImportError as _exc:
    raise ModuleNotFoundError(
        f"wavespeed_async.redis needs redis-py ({_exc}); install it with: "
        f"{install_command('redis')}",
        name=_exc.name,
    ) from _exc

from wavespeed_async.redis.share import RedisShare

__all__ = ["RedisShare"]
