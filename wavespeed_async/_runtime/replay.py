"""The webhook replay guard for a whole account: one delivery is processed once.

That holds whichever worker process receives it, and however often it is sent.

Each process keeps its own :class:`~wavespeed_async._core.webhooks.ReplayGuard` (a replay to
the same process costs no call); with a share, a delivery id is also recorded there, set if
absent with a time to live, so a replay that reaches another worker is refused too. While
the share's server is away, the process's own guard decides alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wavespeed_async._core.webhooks import Delivery, ReplayGuard
    from wavespeed_async._runtime.share import Share

__all__ = ["first_time"]

#: Kept beyond the window a delivery's timestamp must be in, for the clocks' differences.
_MARGIN_S = 60.0


async def first_time(guard: ReplayGuard, share: Share | None, delivery: Delivery) -> bool:
    """Whether ``delivery`` is seen for the first time; records it either way.

    First by this process and, with a ``share``, by every process of the account.
    """
    if not guard.first_time(delivery):
        return False
    ask = getattr(share, "first_delivery", None)  # a Share of an older interface: local only
    if ask is None:
        return True
    # A delivery is accepted while its timestamp is within tolerance_s of now, on either side.
    seen: bool | None = await ask(delivery.id, 2 * guard.tolerance_s + _MARGIN_S)
    return seen is not False
