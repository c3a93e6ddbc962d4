"""What tasks cost, as data: quotes, billing records and costs, history entries, price rules.

Pure and sans-IO: the calls live in :mod:`wavespeed_async._runtime.spend`. Every amount is
a ``Decimal`` in USD. Answers are decoded with JSON numbers read as ``Decimal`` (their
digits, never a float) into plain values first, then turned into the records below one
entry at a time, so that an odd entry is skipped rather than failing a whole page.

**The input shape.** A quote holds for every input of the same *shape*: the model and the
values of the inputs that drive its price. The catalogue's ``formula`` (a JSONata
expression over the inputs) names them (``num_images``, ``duration``); a model with a
formula that names none (or an empty one) has one price. For a model the catalogue does
not describe, the shape is every input except free text (prompts, captions), URLs and
seeds: more quotes than needed, never a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final

import msgspec

from wavespeed_async._core.catalog import Model
from wavespeed_async._core.ids import is_task_id
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.money import ZERO

__all__ = [
    "BatchQuote",
    "BillingRecord",
    "Cost",
    "HistoryEntry",
    "ModelSpend",
    "PriceRule",
    "Quote",
    "billing_page",
    "costs_from_records",
    "formula_inputs",
    "history_page",
    "price_rules",
    "quote_from",
    "shape_of",
    "summarise",
]

#: Decodes an envelope with every JSON number that has a fraction as a ``Decimal``.
money_decoder: Final = msgspec.json.Decoder(float_hook=Decimal)


class Quote(msgspec.Struct, frozen=True):
    """What one task of ``model`` with a given input will be charged (a free quote).

    Attributes:
        model: The model id.
        price_usd: The list price.
        discounted_price_usd: The price after the account's discount: what is charged.
        discount_rate: The fraction taken off (0 ~ 1).
        currency: ``"USD"``.
    """

    model: str
    price_usd: Decimal
    discounted_price_usd: Decimal
    discount_rate: Decimal = ZERO
    currency: str = "USD"

    @property
    def cost_usd(self) -> Decimal:
        """What a task of this shape is charged: the discounted price."""
        return self.discounted_price_usd


class ModelSpend(msgspec.Struct, frozen=True):
    """The quote of a batch's jobs of one model."""

    model: str
    jobs: int
    total_usd: Decimal


class BatchQuote(msgspec.Struct, frozen=True):
    """The quote of many inputs (``client.quote_many``).

    Attributes:
        quotes: One per input, in input order.
        by_model: Jobs and total per model, in the order models first appear.
        total_usd: What the whole batch would be charged.
    """

    quotes: list[Quote]
    by_model: list[ModelSpend]
    total_usd: Decimal


def summarise(quotes: list[Quote]) -> BatchQuote:
    """A batch's quote from its jobs' quotes."""
    jobs: dict[str, int] = {}
    totals: dict[str, Decimal] = {}
    for q in quotes:
        jobs[q.model] = jobs.get(q.model, 0) + 1
        totals[q.model] = totals.get(q.model, ZERO) + q.cost_usd
    by_model = [ModelSpend(m, jobs[m], totals[m]) for m in jobs]
    return BatchQuote(quotes, by_model, sum(totals.values(), ZERO))


class BillingRecord(msgspec.Struct, frozen=True):
    """One billing record: a charge when a task was created, or a refund.

    Attributes:
        id: The record's id.
        task_id: The task it is for.
        kind: ``"deduct"`` or ``"refund"``.
        amount_usd: What moved the balance (positive for both kinds).
        model: The model id, when given.
        created_at: When, as the server wrote it (ISO 8601).
        order_id: The order the record belongs to (a refund shares its charge's).
    """

    id: str
    task_id: str
    kind: str
    amount_usd: Decimal
    model: str | None = None
    created_at: str | None = None
    order_id: str | None = None


class Cost(msgspec.Struct, frozen=True):
    """What one task cost, from its billing records.

    Attributes:
        task_id: The task.
        charged_usd: The sum of its charges (``deduct``).
        refunded_usd: The sum of its refunds.
        records: Its billing records; empty when none was found (not billed, or not yet).
    """

    task_id: str
    charged_usd: Decimal = ZERO
    refunded_usd: Decimal = ZERO
    records: tuple[BillingRecord, ...] = ()

    @property
    def net_usd(self) -> Decimal:
        """What the task cost in the end: charges minus refunds."""
        return self.charged_usd - self.refunded_usd

    @property
    def known(self) -> bool:
        """Whether a billing record was found for the task."""
        return bool(self.records)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: Any) -> Decimal | None:
    """A JSON amount (a number, or a numeric string) as a ``Decimal``; ``None`` if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except ArithmeticError:
            return None
    else:
        return None
    return amount if amount.is_finite() else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def quote_from(model: str, data: Any) -> Quote | None:
    """A :class:`Quote` from ``/model/price`` data; ``None`` when it names no price.

    The older ``/model/pricing``'s ``unit_price`` is read too.
    """
    d = _mapping(data)
    price = _amount(d.get("price"))
    discounted = _amount(d.get("discounted_price"))
    if price is None and discounted is None:
        price = discounted = _amount(d.get("unit_price"))
    price = price if price is not None else discounted
    discounted = discounted if discounted is not None else price
    if price is None or discounted is None:
        return None
    rate = _amount(d.get("discount_rate")) or ZERO
    currency = _text(d.get("currency")) or "USD"
    return Quote(_text(d.get("model_id")) or model, price, discounted, rate, currency)


def billing_page(data: Any) -> tuple[list[BillingRecord], bool]:
    """The records of one ``billings/search`` page (odd entries skipped), and ``has_more``."""
    d = _mapping(data)
    records = []
    items = d.get("items")
    for item in items if isinstance(items, list) else ():
        it = _mapping(item)
        pred = _mapping(it.get("prediction"))
        order = _mapping(it.get("order"))
        task_id = pred.get("uuid")
        amount = _amount(it.get("price"))
        kind = _text(it.get("billing_type"))
        if not isinstance(task_id, str) or not is_task_id(task_id) or amount is None or not kind:
            continue
        records.append(
            BillingRecord(
                id=_text(it.get("uuid")) or "",
                task_id=task_id,
                kind=kind,
                amount_usd=abs(amount),
                model=_text(pred.get("model_uuid")),
                created_at=_text(it.get("created_at")),
                order_id=_text(order.get("uuid")),
            )
        )
    return records, d.get("has_more") is True


def costs_from_records(
    task_ids: Iterable[str], records: Iterable[BillingRecord]
) -> dict[str, Cost]:
    """Each task's :class:`Cost` (every id of ``task_ids``, in order), from its records.

    A record seen twice (pages that moved) counts once.
    """
    found: dict[str, dict[str, BillingRecord]] = {}
    for r in records:
        found.setdefault(r.task_id, {})[r.id or f"{r.kind}:{r.order_id}:{r.created_at}"] = r
    out: dict[str, Cost] = {}
    for task_id in task_ids:
        mine = sorted(found.get(task_id, {}).values(), key=lambda r: (r.created_at or "", r.id))
        charged = sum((r.amount_usd for r in mine if r.kind == "deduct"), ZERO)
        refunded = sum((r.amount_usd for r in mine if r.kind == "refund"), ZERO)
        out[task_id] = Cost(task_id, charged, refunded, tuple(mine))
    return out


class HistoryEntry(msgspec.Struct, frozen=True):
    """One task of the account's history (``client.predictions()``).

    Attributes:
        id, model, status, outputs, error: As a Prediction has them.
        input: The input the task ran with, when the server echoes it (else ``None``).
        created_at: When it was created, as the server wrote it (ISO 8601).
    """

    id: str
    model: str = ""
    status: str = ""
    outputs: list[Any] = msgspec.field(default_factory=list)
    input: dict[str, Any] | None = None
    created_at: str | None = None
    error: str = ""

    @property
    def created(self) -> datetime | None:
        """``created_at`` as an aware datetime (UTC when it names no zone), if readable."""
        return parse_time(self.created_at)

    def prediction(self) -> Prediction:
        """The entry as a :class:`~wavespeed_async.Prediction`."""
        return Prediction(
            id=self.id,
            status=self.status or "created",
            model=self.model,
            outputs=list(self.outputs),
            created_at=self.created_at,
            error=self.error,
        )


def history_page(data: Any) -> list[HistoryEntry]:
    """The entries of one history page (odd entries skipped)."""
    items = _mapping(data).get("items")
    entries = []
    for item in items if isinstance(items, list) else ():
        it = _mapping(item)
        task_id = it.get("id")
        if not isinstance(task_id, str) or not is_task_id(task_id):
            continue
        given = it.get("input", it.get("inputs"))
        outputs = it.get("outputs")
        entries.append(
            HistoryEntry(
                id=task_id,
                model=_text(it.get("model")) or "",
                status=_text(it.get("status")) or "",
                outputs=list(outputs) if isinstance(outputs, list) else [],
                input=dict(given) if isinstance(given, Mapping) else None,
                created_at=_text(it.get("created_at")),
                error=_text(it.get("error")) or "",
            )
        )
    return entries


#: A fraction of a second (any number of digits) and an offset without its colon, which
#: ``datetime.fromisoformat`` takes only from Python 3.11.
_FRACTION: Final = re.compile(r"\.(\d+)")
_OFFSET: Final = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (``Z``, an offset, or none for UTC) as an aware datetime.

    Fractions finer than a microsecond (the API's nanoseconds) are cut to microseconds.
    """
    if not text:
        return None
    iso = text.strip()
    if iso[-1:] in ("Z", "z"):
        iso = iso[:-1] + "+00:00"
    iso = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), iso, count=1)
    iso = _OFFSET.sub(r"\1:\2", iso)
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


# -- the input shape ---------------------------------------------------------------------


class PriceRule(msgspec.Struct, frozen=True):
    """What the catalogue says about a model's price.

    Attributes:
        model: The model id.
        priced: The inputs its formula names (empty: one price for every input).
        defaults: Their schema defaults, quoted when an input leaves them out.
    """

    model: str
    priced: frozenset[str]
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)


#: A bare word: not part of a number (``4k``), a function or a variable (``$exists``).
_WORD: Final = re.compile(r"(?<![\w$])[A-Za-z_][A-Za-z0-9_]*")
_JSONATA_WORDS: Final = frozenset({"and", "or", "in", "true", "false", "null", "function"})


def formula_inputs(formula: str) -> frozenset[str]:
    """The input names a JSONata price formula may read.

    Every bare word that is not a function (``$exists``), a variable or a keyword. Words
    inside string literals count too: reading too many inputs only costs quotes, too few
    would reuse a wrong one.
    """
    return frozenset(w for w in _WORD.findall(formula) if w not in _JSONATA_WORDS)


def price_rules(models: Iterable[Model]) -> dict[str, PriceRule]:
    """The price rule of every catalogue model that has a ``formula``.

    Models without one are left to the default shape.
    """
    rules: dict[str, PriceRule] = {}
    for model in models:
        if model.formula is None:
            continue
        schema = model.input_schema or {}
        properties = _mapping(schema.get("properties"))
        names = formula_inputs(model.formula)
        if properties:
            names = frozenset(n for n in names if n in properties)
        defaults = {
            n: _mapping(properties.get(n)).get("default")
            for n in names
            if _mapping(properties.get(n)).get("default") is not None
        }
        rules[model.id] = PriceRule(model.id, names, defaults)
    return rules


_URL_PREFIXES: Final = ("http://", "https://", "data:")
#: Longer strings are free text (or inline media), whatever their key.
_MAX_SHAPE_TEXT: Final = 200


def _free(key: str) -> bool:
    """Whether input ``key`` is free text or a seed (never part of a default shape)."""
    k = key.lower()
    return k.endswith(("prompt", "_text")) or k in ("text", "caption", "seed")


def _normalised(value: Any) -> Any:
    """``value`` with URLs and long text replaced by markers (they do not drive prices)."""
    if isinstance(value, str):
        if value.startswith(_URL_PREFIXES):
            return "<url>"
        return "<text>" if len(value) > _MAX_SHAPE_TEXT else value
    if isinstance(value, Mapping):
        return {str(k): _normalised(v) for k, v in value.items() if not _free(str(k))}
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    return value


def shape_of(
    model: str, inputs: Mapping[str, Any], rule: PriceRule | None
) -> tuple[bytes, dict[str, Any]]:
    """The quote-cache key of ``model`` with ``inputs``, and the inputs to quote it with.

    With a rule, the key holds the values of the inputs its formula names (a default
    filled in where one is left out, and quoted too: a quote without ``duration`` would
    fall back to the base price and come out low). Without one, every input but free
    text, URLs and seeds.
    """
    quoted = dict(inputs)
    if rule is not None:
        for name, default in rule.defaults.items():
            quoted.setdefault(name, default)
        shape: Any = {n: quoted.get(n) for n in sorted(rule.priced)}
    else:
        shape = _normalised({k: v for k, v in inputs.items() if not _free(k)})
    try:
        key = msgspec.json.encode([model, shape], order="sorted")
    except (TypeError, ValueError):  # values JSON cannot hold: one quote each
        key = repr((model, sorted(map(repr, inputs.items())))).encode()
    return key, quoted
