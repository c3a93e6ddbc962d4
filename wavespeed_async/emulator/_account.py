"""The account endpoints: catalogue, price quotes, balance, billing records, usage.

``GET /api/v3/models``, ``POST /api/v3/model/price`` (and the older
``/api/v3/model/pricing``), ``GET /api/v3/balance``, ``POST /api/v3/billings/search`` and
``POST /api/v3/user/usage_stats``. Amounts are JSON numbers (exact decimals), in USD.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

from wavespeed_async.emulator._billing import BillingRecord, Pricing
from wavespeed_async.emulator._catalogue import catalogue_entry
from wavespeed_async.emulator._config import EmulatorConfig
from wavespeed_async.emulator._scheduler import Scheduler
from wavespeed_async.emulator._tasks import TaskEngine
from wavespeed_async.emulator._wire import (
    EmulatedResponse,
    Request,
    envelope,
    error,
    iso,
    json_object,
    json_reply,
    paging,
    time_field,
)

__all__ = ["Account"]

_BILLING_TYPES: Final = ("deduct", "refund")
#: The longest window ``usage_stats`` takes.
_USAGE_MAX_S: Final = 31 * 86400.0


class Account:
    """Catalogue, quotes, balance and billing history of the one emulated account."""

    def __init__(
        self,
        config: EmulatorConfig,
        scheduler: Scheduler,
        tasks: TaskEngine,
        pricing: Pricing,
        epoch: float,
    ) -> None:
        self._config = config
        self._scheduler = scheduler
        self._tasks = tasks
        self._pricing = pricing
        #: Wall-clock time of the emulator clock's zero.
        self._epoch = epoch

    async def balance(self, request: Request) -> EmulatedResponse:
        """``GET /api/v3/balance``: ``{"balance": USD}``."""
        return json_reply(200, envelope({"balance": self._tasks.ledger.balance}))

    async def models(self, request: Request) -> EmulatedResponse:
        """``GET /api/v3/models``: the catalogue, in ``sort_order``."""
        pricing = self._pricing
        entries = sorted(pricing.models.values(), key=lambda m: (m.sort_order, m.model_id))
        data = [catalogue_entry(m, pricing.unit_price(m), request.base) for m in entries]
        return json_reply(200, envelope(data))

    async def _quote_request(
        self, request: Request
    ) -> tuple[str, dict[str, Any]] | EmulatedResponse:
        body = await json_object(request, '{"model_id": ..., "inputs": {...}}')
        if isinstance(body, EmulatedResponse):
            return body
        model_id, inputs = body.get("model_id"), body.get("inputs")
        if not isinstance(model_id, str) or not model_id:
            return error(
                400, "model_id: required, a model id such as wavespeed-ai/flux-kontext-dev"
            )
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            return error(400, "inputs: expected a JSON object of model inputs")
        if self._pricing.model(model_id) is None:
            return error(404, f"model {model_id!r:.120} not found")
        return model_id, inputs

    async def price(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/model/price``: a free quote for ``{model_id, inputs}``."""
        if not self._config.serve_model_price:
            return error(404, "not found")
        asked = await self._quote_request(request)
        if isinstance(asked, EmulatedResponse):
            return asked
        model_id, inputs = asked
        price, discounted = self._pricing.price(model_id, inputs, quote=True)
        data = {
            "model_id": model_id,
            "price": price,
            "discounted_price": discounted,
            "discount_rate": self._pricing.discount_rate,
            "currency": "USD",
        }
        return json_reply(200, envelope(data))

    async def pricing(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/model/pricing`` (the older form): ``{model_id, unit_price}``."""
        asked = await self._quote_request(request)
        if isinstance(asked, EmulatedResponse):
            return asked
        model_id, inputs = asked
        _, discounted = self._pricing.price(model_id, inputs, quote=True)
        return json_reply(
            200, envelope({"model_id": model_id, "unit_price": discounted, "currency": "USD"})
        )

    async def billings(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/billings/search``: billing records, newest first, a page at a time."""
        body = await json_object(request, "{page, page_size, billing_type, ...}", empty_ok=True)
        if isinstance(body, EmulatedResponse):
            return body
        paged = paging(body)
        if isinstance(paged, EmulatedResponse):
            return paged
        page, size = paged
        kind = body.get("billing_type") or None
        if kind is not None and kind not in _BILLING_TYPES:
            return error(400, f"billing_type: {kind!r:.40}; allowed: 'deduct' or 'refund'")
        start, end = time_field(body, "start_time"), time_field(body, "end_time")
        if isinstance(start, EmulatedResponse):
            return start
        if isinstance(end, EmulatedResponse):
            return end
        model = body.get("model_uuid") or None
        if model is not None and not isinstance(model, str):
            return error(400, "model_uuid: expected a model id (a string)")
        wanted = body.get("prediction_uuids")
        if wanted is not None and (
            not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted)
        ):
            return error(400, "prediction_uuids: expected a list of task ids")
        ids = set(wanted) if wanted else None
        epoch = self._epoch

        def matches(r: BillingRecord) -> bool:
            wall = epoch + r.created_at
            return (
                (kind is None or r.billing_type == kind)
                and (start is None or wall >= start)
                and (end is None or wall <= end)
                and (model is None or r.model == model)
                and (ids is None or r.task_id in ids)
            )

        found = [r for r in reversed(self._tasks.ledger.records) if matches(r)]
        chosen = found[(page - 1) * size : page * size]
        data = {
            "page": page,
            "has_more": len(found) > page * size,
            "items": [self._billing_item(r, epoch) for r in chosen],
        }
        return json_reply(200, envelope(data))

    def _billing_item(self, r: BillingRecord, epoch: float) -> dict[str, Any]:
        task = self._tasks.get(r.task_id)
        refunded = task is not None and task.refunded
        return {
            "uuid": r.uuid,
            "billing_type": r.billing_type,
            "price": r.price,
            "created_at": iso(epoch + r.created_at),
            "order": {
                "uuid": r.order_uuid,
                "state": "refunded" if refunded else "paid",
                "price": r.price,
                "origin_price": r.origin_price,
            },
            "prediction": {
                "uuid": r.task_id,
                "model_uuid": r.model,
                "status": task.visible_status if task is not None else "deleted",
            },
        }

    async def usage(self, request: Request) -> EmulatedResponse:
        """``POST /api/v3/user/usage_stats``: spend per model and per day in a window.

        ``start_time``/``end_time`` default to the 31 days up to now; at most 31 days.
        """
        body = await json_object(request, "{start_time, end_time, model_uuid}", empty_ok=True)
        if isinstance(body, EmulatedResponse):
            return body
        start, end = time_field(body, "start_time"), time_field(body, "end_time")
        if isinstance(start, EmulatedResponse):
            return start
        if isinstance(end, EmulatedResponse):
            return end
        epoch = self._epoch
        end = end if end is not None else epoch + self._scheduler.now()
        start = start if start is not None else end - _USAGE_MAX_S
        if not 0 <= end - start <= _USAGE_MAX_S:
            return error(
                400,
                "end_time: must be after start_time, at most 31 days later; allowed: 0 ~ 31 days",
            )
        model = body.get("model_uuid") or None
        per_model: dict[str, list[Any]] = {}
        daily: dict[str, list[Any]] = {}
        total, requests, successes = Decimal(0), 0, 0
        for r, wall in self._records_between(start, end, epoch):
            if model is not None and r.model != model:
                continue
            deduct = r.billing_type == "deduct"
            amount = r.price if deduct else -r.price
            count = 1 if deduct else 0
            m = per_model.setdefault(r.model, [Decimal(0), 0])
            m[0] += amount
            m[1] += count
            d = daily.setdefault(time.strftime("%Y-%m-%d", time.gmtime(wall)), [Decimal(0), 0])
            d[0] += amount
            d[1] += count
            total += amount
            requests += count
            task = self._tasks.get(r.task_id)
            if deduct and task is not None and task.status == "completed":
                successes += 1
        data = {
            "per_model_usage": [
                {"model_uuid": k, "total_cost": v[0], "total_count": v[1]}
                for k, v in sorted(per_model.items())
            ],
            "daily_usage": [
                {"date": k, "amount": v[0], "count": v[1]} for k, v in sorted(daily.items())
            ],
            "summary": {
                "total_cost": total,
                "total_requests": requests,
                "success_requests": successes,
            },
        }
        return json_reply(200, envelope(data))

    def _records_between(
        self, start: float, end: float, epoch: float
    ) -> Iterator[tuple[BillingRecord, float]]:
        for r in self._tasks.ledger.records:
            wall = epoch + r.created_at
            if start <= wall <= end:
                yield r, wall
