"""The seam between a Client's flow control and limits shared with other processes.

Without a share, :class:`~wavespeed_async._runtime.flow.FlowControl` keeps every limit
inside one process. With one, the account-wide parts go through a :class:`Share`, the small
interface below; :class:`wavespeed_async.redis.RedisShare` is the implementation that
ships, found by URL scheme through :mod:`wavespeed_async._core.registry` so that the core
never imports it. A Share holds:

* in-flight slots as leases (:meth:`Share.acquire_slot` / :meth:`Share.release_slot`);
* the start window (:meth:`Share.acquire_start`), which also honours the shared cool-down;
* the 429 cool-down (:meth:`Share.start_cooldown`; others learn of it through the
  ``on_cooldown`` callback given to :meth:`Share.bind`);
* the poll budget (:meth:`Share.acquire_poll`);
* webhook deliveries (:meth:`Share.publish`, :meth:`Share.stored_result`; deliveries
  published by other processes arrive through ``on_delivery``);
* the webhook replay guard, account-wide (:meth:`Share.first_delivery`);
* the spending budget (:meth:`Share.reserve_spend`, :meth:`Share.release_spend`,
  :meth:`Share.spent`), in integer micro-dollars.

What a share hands back comes from a server that other programs may write to, so it is
never trusted as it is: a result is taken only with a valid tag of the ``signer`` given to
:meth:`Share.bind` (a key derived from the API key, which every process of the account
has, and the server never sees), only for the task it names, and only when it is final;
every other value (a cool-down, a wait) is bounded before it is used.

The local in-flight limiter still runs in front of the share, so a process never holds more
than its own ``max_in_flight``. A Share that loses its server must not fail the calls: it
falls back to a conservative local share of the limits and reconnects by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from wavespeed_async._core import registry
from wavespeed_async._core.secret import masked

if TYPE_CHECKING:
    from wavespeed_async._core.models import Prediction
    from wavespeed_async._core.secret import Secret, SigningKey
    from wavespeed_async._core.settings import FlowLimits

__all__ = ["Share", "default_namespace", "resolve_share", "share_signer"]


class Share(Protocol):
    """What a backend shared by many processes provides (one instance per Client)."""

    @property
    def connections(self) -> int:
        """How many sockets the share may hold open at most.

        Counted against the process's open-file limit when the Client sizes its HTTP pool.
        """

    def bind(
        self,
        limits: FlowLimits,
        *,
        namespace: str,
        clock: Callable[[], float],
        on_delivery: Callable[[Prediction], object],
        on_cooldown: Callable[[float], None],
        signer: SigningKey,
        max_cooldown_s: float,
    ) -> None:
        """Attach to one Client.

        Takes its limits, the default namespace, the loop's clock, and what to call when
        another process delivers a result or starts a cool-down.

        ``signer`` authenticates shared results (derived from the API key: the same in
        every process of the account); ``max_cooldown_s`` bounds a cool-down read from
        the share (the Client's ``RetryConfig.max_retry_after_s``).
        """

    async def start(self) -> None:
        """Connect and subscribe; raise ``ConnectError`` naming the server if it is down."""

    async def aclose(self) -> None:
        """Give back every lease, stop background work and close the connections."""

    async def acquire_slot(self, token: object) -> None:
        """Wait for an account-wide in-flight slot, held on behalf of ``token``."""

    def release_slot(self, token: object) -> None:
        """Give back ``token``'s slot (at once locally; the server is told in background)."""

    async def acquire_start(self) -> object:
        """Wait until one more task may start under the account-wide per-minute limit.

        Returns a handle for :meth:`start_sent`.
        """

    def start_sent(self, handle: object) -> None:
        """The submit of ``handle`` was answered: count the start from now.

        Now is the latest time the server can have created the task, so a request slowed on
        its way (a busy process, a retry) cannot make the server count it later than the
        window did.
        """

    async def acquire_poll(self) -> None:
        """Wait for this poll's share of the account-wide poll budget."""

    def start_cooldown(self, seconds: float) -> None:
        """Pause every process of the account for ``seconds`` (after a 429)."""

    def publish(self, prediction: Prediction) -> None:
        """Tell every process of the account that ``prediction`` ended (in background)."""

    async def stored_result(self, task_id: str) -> Prediction | None:
        """A delivery published for ``task_id`` before anyone waited for it, if any.

        Only an authenticated, final result of that very task.
        """

    async def first_delivery(self, delivery_id: str, ttl_s: float) -> bool | None:
        """Record a webhook delivery id for the whole account (kept ``ttl_s``).

        ``True`` the first time, ``False`` for a replay, ``None`` when the share cannot tell
        (its server is away: the caller's own guard decides).
        """

    async def reserve_spend(self, micros: int, limit_micros: int) -> bool:
        """Add ``micros`` to the committed spend if it stays within ``limit_micros``.

        Atomic, for the whole account; returns whether it was added. Optional with the two
        below: without them, a Client with ``FlowLimits.budget_usd`` refuses the share.
        """

    def release_spend(self, micros: int) -> None:
        """Take ``micros`` back off the account's committed spend (in background)."""

    def spent(self) -> int:
        """The account's committed spend in micro-dollars, as this process last saw it."""


def default_namespace(api_key: Secret, base_url: str) -> str:
    """A namespace for one account on one API: a hash of both (never the key itself)."""
    return api_key.fingerprint(base_url)[:16]


def share_signer(api_key: Secret) -> SigningKey:
    """The key that authenticates what the processes of one account share."""
    return api_key.signing_key("wavespeed-async share v1")


def resolve_share(share: str | Share | None) -> Share | None:
    """``Client(share=...)``: a URL is built by the backend its scheme names.

    See :mod:`wavespeed_async._core.registry`; ``redis://`` needs the ``redis`` extra.
    """
    if share is None or not isinstance(share, str):
        return share
    backend: Share = registry.resolve("share", masked(share))
    return backend
