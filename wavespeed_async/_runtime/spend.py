"""The spend calls of one Client: the catalogue's price rules, quotes, costs and history.

Quotes are cached by input shape (see :mod:`wavespeed_async._core.spend`): a batch of
10,000 inputs of one shape costs one quote request, and the first job of a shape asks for
all the others waiting on it (one request in flight per shape). ``POST /model/price`` is
used, and ``/model/pricing`` (its older form) when the server has no such endpoint.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.errors import (
    AuthenticationError,
    DecodeError,
    NotFoundError,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.models import AnyEnvelope
from wavespeed_async._core.reconcile import DEFAULT_SLACK_S, LostSubmit, Reconciled, match
from wavespeed_async._core.spend import (
    BillingRecord,
    Cost,
    HistoryEntry,
    PriceRule,
    Quote,
    billing_page,
    costs_from_records,
    history_page,
    price_rules,
    quote_from,
    shape_of,
)

if TYPE_CHECKING:
    from wavespeed_async._runtime.api import Api

__all__ = ["PAGE_SIZE", "Pricing", "iso_time"]

log = logging.getLogger("wavespeed_async")

#: The largest page the billing and history searches give.
PAGE_SIZE: Final = 100
#: How long a quote, and the catalogue's price rules, are reused.
QUOTE_TTL_S: Final = 3600.0
#: How long a refused quote (an unknown model) is remembered, so a batch asks once.
REFUSED_TTL_S: Final = 60.0
#: Shapes remembered at most (oldest dropped first).
MAX_SHAPES: Final = 10_000
#: A history or billing search stops after this many pages (a server ignoring ``page``).
MAX_PAGES: Final = 1000
#: Billing searches at once (each covers 100 tasks).
COST_SEARCHES: Final = 4

#: Envelopes whose data is read as plain values, every fractional number a ``Decimal``.
envelope_decoder: Final = msgspec.json.Decoder(AnyEnvelope, float_hook=Decimal)


def iso_time(value: datetime | float | str | None, name: str) -> str | None:
    """A time for a search: a datetime (naive: UTC), unix seconds, or ISO 8601 text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, tz=timezone.utc)
    else:
        raise ValidationError(
            name, f"{name}: {value!r}; allowed: a datetime, unix seconds or ISO 8601 text"
        )
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Pending:
    """One quote request in flight, that other jobs of the same shape wait for."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = anyio.Event()


class Pricing:
    """Price rules, quotes (cached by shape), costs and history for one Client.

    Args:
        api: Returns the Client's API caller (opening the Client on first use).
        models: Returns the catalogue's models (the Client's one catalogue: its fetch, cache
            and file are shared with the input check).
        clock: Monotonic seconds, for the caches' ages.
    """

    def __init__(
        self,
        api: Callable[[], Api],
        *,
        models: Callable[[], Awaitable[Iterable[Model]]],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._api = api
        self._models = models
        self._clock = clock
        self._rules: dict[str, PriceRule] | None = None
        self._rules_until = 0.0
        self._rules_pending: _Pending | None = None
        self._quotes: collections.OrderedDict[bytes, tuple[Quote | WaveSpeedError, float]] = (
            collections.OrderedDict()
        )
        self._pending: dict[bytes, _Pending] = {}
        self._price_path = "/api/v3/model/price"
        #: Quote requests sent (cache misses), and quotes answered from the cache.
        self.quote_requests = 0
        self.quote_hits = 0

    # -- price rules -----------------------------------------------------------------------

    async def rules(self) -> dict[str, PriceRule]:
        """The catalogue's price rules by model (``{}`` when the catalogue is unavailable).

        Without rules, shapes fall back to every input but text, URLs and seeds.
        """
        while True:
            if self._rules is not None and self._clock() < self._rules_until:
                return self._rules
            pending = self._rules_pending
            if pending is None:
                break
            await pending.done.wait()
        pending = self._rules_pending = _Pending()
        try:
            try:
                rules, ttl = price_rules(await self._models()), QUOTE_TTL_S
            except AuthenticationError:
                raise
            except WaveSpeedError as exc:
                log.info("no price rules from the catalogue (%s); quotes by whole input", exc)
                rules, ttl = {}, REFUSED_TTL_S
            self._rules, self._rules_until = rules, self._clock() + ttl
            return rules
        finally:
            self._rules_pending = None
            pending.done.set()

    # -- quotes ----------------------------------------------------------------------------

    async def quote(self, model: str, inputs: Mapping[str, Any]) -> Quote:
        """The quote of one task (from the cache when a task of its shape was quoted)."""
        rule = (await self.rules()).get(model)
        key, quoted = shape_of(model, inputs, rule)
        while True:
            hit = self._cached(key)
            if hit is not None:
                self.quote_hits += 1
                if isinstance(hit, WaveSpeedError):
                    raise hit
                return hit
            pending = self._pending.get(key)
            if pending is None:
                break
            await pending.done.wait()  # the job asking for this shape answers for all
        pending = self._pending[key] = _Pending()
        try:
            try:
                quote = await self._fetch(model, quoted)
            except (NotFoundError, DecodeError) as exc:
                self._store(key, exc, REFUSED_TTL_S)  # an unknown model: asked once a minute
                raise
            self._store(key, quote, QUOTE_TTL_S)
            return quote
        finally:
            del self._pending[key]
            pending.done.set()

    def _cached(self, key: bytes) -> Quote | WaveSpeedError | None:
        found = self._quotes.get(key)
        if found is None:
            return None
        if self._clock() >= found[1]:
            del self._quotes[key]
            return None
        self._quotes.move_to_end(key)
        return found[0]

    def _store(self, key: bytes, value: Quote | WaveSpeedError, ttl_s: float) -> None:
        self._quotes[key] = (value, self._clock() + ttl_s)
        self._quotes.move_to_end(key)
        while len(self._quotes) > MAX_SHAPES:
            self._quotes.popitem(last=False)

    async def _fetch(self, model: str, inputs: dict[str, Any]) -> Quote:
        body = msgspec.json.encode({"model_id": model, "inputs": inputs})
        api = self._api()
        self.quote_requests += 1
        path = self._price_path
        try:
            env = await api.call("POST", path, envelope_decoder, json_body=body)
        except NotFoundError:
            if path != "/api/v3/model/price":
                raise
            # No such endpoint, or no such model: the older form tells which.
            env = await api.call("POST", "/api/v3/model/pricing", envelope_decoder, json_body=body)
            self._price_path = "/api/v3/model/pricing"
            log.info("no /model/price on this server: quotes come from /model/pricing")
        quote = quote_from(model, env.data)
        if quote is None:
            raise DecodeError(f"the quote for {model} names no price", body=str(env.data)[:2000])
        # Under the model asked for, whatever id the answer spells.
        return msgspec.structs.replace(quote, model=model)

    # -- costs -----------------------------------------------------------------------------

    async def costs(self, task_ids: Iterable[str]) -> dict[str, Cost]:
        """Each task's cost from its billing records (100 tasks per search)."""
        ids = list(dict.fromkeys(task_ids))
        records: list[BillingRecord] = []
        limiter = anyio.CapacityLimiter(COST_SEARCHES)

        async def search(chunk: list[str]) -> None:
            async with limiter:
                records.extend(await self.billing_records(prediction_uuids=chunk))

        async with anyio.create_task_group() as tg:
            for i in range(0, len(ids), PAGE_SIZE):
                tg.start_soon(search, ids[i : i + PAGE_SIZE])
        return costs_from_records(ids, records)

    async def billing_records(self, **filters: Any) -> list[BillingRecord]:
        """Every billing record that matches ``filters`` (the search's fields), all pages."""
        api = self._api()
        out: list[BillingRecord] = []
        for page in range(1, MAX_PAGES + 1):
            body = {"page": page, "page_size": PAGE_SIZE, **filters}
            env = await api.call(
                "POST",
                "/api/v3/billings/search",
                envelope_decoder,
                json_body=msgspec.json.encode(body),
            )
            records, more = billing_page(env.data)
            out += records
            if not more or not records:
                break
        return out

    # -- history ---------------------------------------------------------------------------

    async def history(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[HistoryEntry]:
        """The history, newest first, a page at a time.

        A page shorter than ``page_size`` is the last; a page with nothing new ends it too.
        """
        api = self._api()
        filters = {
            k: v
            for k, v in (
                ("model", model),
                ("status", status),
                ("created_after", created_after),
                ("created_before", created_before),
            )
            if v is not None
        }
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            body = msgspec.json.encode({"page": page, "page_size": page_size, **filters})
            env = await api.call("POST", "/api/v3/predictions", envelope_decoder, json_body=body)
            raw = env.data.get("items") if isinstance(env.data, dict) else None
            entries = history_page(env.data)
            fresh = [e for e in entries if e.id not in seen]
            for e in fresh:
                seen.add(e.id)
                yield e
            if not fresh or not isinstance(raw, list) or len(raw) < page_size:
                return

    async def reconcile(
        self, lost: list[LostSubmit], *, exclude: Iterable[str], slack_s: float = DEFAULT_SLACK_S
    ) -> list[Reconciled]:
        """Look for each lost submit's task in the history.

        Per model, in the window that covers every lost submit of that model; see
        :mod:`wavespeed_async._core.reconcile`.
        """
        entries: list[HistoryEntry] = []
        for model in dict.fromkeys(s.model for s in lost):
            windows = [s.window(slack_s) for s in lost if s.model == model]
            after = iso_time(min(w[0] for w in windows) - 1, "created_after")
            before = iso_time(max(w[1] for w in windows) + 1, "created_before")
            entries += [
                e
                async for e in self.history(model=model, created_after=after, created_before=before)
            ]
        return match(lost, entries, exclude=exclude, slack_s=slack_s)
