"""Money, exactly: amounts in USD as ``Decimal``, and integer micro-dollars for counters.

Floats never carry money here: a JSON number is decoded straight into a ``Decimal``
(msgspec reads its digits), a float given by a caller is taken as written (``0.1`` is
``Decimal("0.1")``, via ``str``), and shared counters (a budget on a Redis server) hold
integer micro-dollars, rounded up so that a reservation never counts less than the price.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Final

from wavespeed_async._core.errors import ValidationError

__all__ = [
    "MICRO",
    "ZERO",
    "format_usd",
    "from_micros",
    "plain_usd",
    "split_usd",
    "to_micros",
    "usd_amount",
]

#: One micro-dollar: the unit of shared counters.
MICRO: Final = Decimal("0.000001")
ZERO: Final = Decimal(0)


def usd_amount(value: object, name: str, *, positive: bool = True) -> Decimal:
    """``value`` as an exact, finite ``Decimal`` of USD (> 0, or >= 0 without ``positive``).

    Raises:
        ValidationError: not a number (a bool included), not finite, or out of range; the
            message names ``name``.
    """
    allowed = "a number of USD > 0" if positive else "a number of USD >= 0"
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise ValidationError(name, f"{name}: {value!r} is not allowed; allowed: {allowed}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(
            name, f"{name}: {value!r} is not allowed; allowed: {allowed}"
        ) from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        raise ValidationError(name, f"{name}: {value!r} is not allowed; allowed: {allowed}")
    return amount


def to_micros(amount: Decimal) -> int:
    """``amount`` in integer micro-dollars, rounded up (a reservation never falls short)."""
    return int((amount / MICRO).to_integral_value(ROUND_CEILING))


def from_micros(micros: int) -> Decimal:
    """Integer micro-dollars as USD."""
    return (Decimal(micros) * MICRO).normalize() if micros else ZERO


def split_usd(amount: Decimal, n: int) -> Decimal:
    """One of ``n`` equal parts of ``amount``, rounded down to the micro-dollar."""
    return (amount / n).quantize(MICRO, ROUND_FLOOR)


def format_usd(amount: Decimal | None) -> str:
    """``$1.25``, ``$0.0375`` (at least cents, every significant digit), ``-`` for ``None``."""
    if amount is None:
        return "-"
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):.2f}"
    exact = format(abs(amount).normalize(), "f")
    if "." in exact and len(exact.split(".")[1]) > 2:
        text = exact
    return f"{sign}${text}"


def plain_usd(amount: Decimal) -> str:
    """``amount`` as plain digits, without trailing zeros or an exponent (``0.05``, ``10``).

    For files that are read by programs (a JSON string keeps it exact).
    """
    return format(amount.normalize(), "f") if amount else "0"
