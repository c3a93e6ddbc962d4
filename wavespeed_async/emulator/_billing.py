"""Money: price rules, the account's ledger, and the endpoints that show them.

Every amount is a ``Decimal`` in USD. A task is charged when it is created (a ``deduct``
record) and refunded when it fails (a ``refund`` record); the balance moves with both.
Prices come from each model's rule in the catalogue (``_catalogue``), with the unit prices
of ``EmulatorConfig.prices`` taking precedence and ``EmulatorConfig.discount_rate`` taken
off. Models outside the catalogue cost ``default_price`` per image.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Final

import msgspec

from wavespeed_async.emulator._catalogue import CATALOGUE, EmulatedModel

if TYPE_CHECKING:
    from wavespeed_async.emulator._tasks import Task

__all__ = ["BillingRecord", "Ledger", "Pricing", "to_money"]

#: Amounts are rounded to micro-dollars where a discount makes them inexact.
MICRO: Final = Decimal("0.000001")


def to_money(value: Decimal | float | str, name: str) -> Decimal:
    """``value`` as an exact, finite ``Decimal`` (a float is taken as written, via ``str``)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise TypeError(f"{name}: {value!r} is not an amount; allowed: a Decimal or a number")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{name}: {value!r} is not an amount; allowed: a number") from None
    if not amount.is_finite():
        raise ValueError(f"{name}: {value!r} is not finite; allowed: a finite amount")
    return amount


class BillingRecord(msgspec.Struct, frozen=True):
    """One line of the account's billing history (``POST /api/v3/billings/search``)."""

    uuid: str
    #: ``deduct`` when a task is created, ``refund`` when it fails.
    billing_type: str
    #: What moved the balance (after any discount), USD.
    price: Decimal
    #: The price before the discount, USD.
    origin_price: Decimal
    #: Emulator-clock seconds.
    created_at: float
    task_id: str
    model: str
    order_uuid: str


class Pricing:
    """The effective catalogue, and what a task of each model costs."""

    def __init__(
        self,
        models: Mapping[str, EmulatedModel],
        prices: Mapping[str, Decimal],
        default_price: Decimal,
        discount_rate: Decimal,
    ) -> None:
        self.models = {**CATALOGUE, **models}
        self._prices = prices
        self._default_price = default_price
        self.discount_rate = discount_rate

    def model(self, model_id: str) -> EmulatedModel | None:
        return self.models.get(model_id)

    def unit_price(self, model: EmulatedModel) -> Decimal:
        """USD per unit of ``model``: ``EmulatorConfig.prices``, else the catalogue's."""
        return self._prices.get(model.model_id, model.unit_price)

    def price(
        self, model_id: str, inputs: Mapping[str, Any], *, quote: bool = False
    ) -> tuple[Decimal, Decimal]:
        """``(price, discounted price)`` of a task of ``model_id`` with ``inputs``.

        With ``quote`` (``/model/price``), a per-second model without ``duration`` costs
        its ``base_price``, as the API's formula falls back to it; a task is charged for
        its default duration instead.
        """
        model = self.models.get(model_id)
        if model is None:
            unit = self._prices.get(model_id, self._default_price)
            origin = unit * _count(inputs.get("num_images"), 1, 10)
        else:
            origin = self.unit_price(model) * _units(model, inputs, quote=quote)
        if not self.discount_rate:
            return origin, origin
        discounted = (origin * (1 - self.discount_rate)).quantize(MICRO, ROUND_HALF_UP)
        return origin, discounted


def _count(value: Any, low: int, high: int, default: int = 1) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    return value if ok else default


def _units(model: EmulatedModel, inputs: Mapping[str, Any], *, quote: bool) -> Decimal:
    if model.pricing == "per_image":
        default = model.default("num_images") or 1
        return Decimal(_count(inputs.get("num_images"), 1, 1000, default))
    if model.pricing == "per_second":
        duration = inputs.get("duration")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
            if quote:
                return Decimal(1)
            duration = model.default("duration") or 1
        return Decimal(str(duration))
    return Decimal(1)


class Ledger:
    """The balance and the billing records, in the order they were made."""

    def __init__(self, initial_balance: Decimal, rng_ids: random.Random) -> None:
        self.balance = initial_balance
        self.records: list[BillingRecord] = []
        self._rng_ids = rng_ids

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng_ids.getrandbits(128), version=4))

    def charge(self, task: Task, now: float) -> None:
        """Deduct ``task.price`` (a new order) when the task is created."""
        task.order_uuid = self._uuid()
        self.balance -= task.price
        self.records.append(
            BillingRecord(
                uuid=self._uuid(),
                billing_type="deduct",
                price=task.price,
                origin_price=task.origin_price,
                created_at=now,
                task_id=task.id,
                model=task.model,
                order_uuid=task.order_uuid,
            )
        )

    def refund(self, task: Task, now: float) -> None:
        """Give back what ``task`` was charged (it failed)."""
        task.refunded = True
        self.balance += task.price
        self.records.append(
            BillingRecord(
                uuid=self._uuid(),
                billing_type="refund",
                price=task.price,
                origin_price=task.origin_price,
                created_at=now,
                task_id=task.id,
                model=task.model,
                order_uuid=task.order_uuid,
            )
        )
