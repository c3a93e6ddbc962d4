"""The pure side of spend: money, input shapes, decoding of odd answers, matching rules."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavespeed_async import FlowLimits, ValidationError
from wavespeed_async._core.catalog import decode_models
from wavespeed_async._core.errors import InsufficientBalanceError, PermissionDeniedError
from wavespeed_async._core.money import format_usd, from_micros, split_usd, to_micros, usd_amount
from wavespeed_async._core.policy import error_class_for
from wavespeed_async._core.reconcile import LostSubmit, agreement, match
from wavespeed_async._core.spend import (
    HistoryEntry,
    PriceRule,
    billing_page,
    costs_from_records,
    formula_inputs,
    history_page,
    parse_time,
    price_rules,
    quote_from,
    shape_of,
)
from wavespeed_async._runtime.budget import Hold, LocalBudget, limit_micros, refused_before_creation
from wavespeed_async._runtime.spend import envelope_decoder, iso_time

MODEL = "owner/model"


# -- money ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, "10"), ("2.50", "2.50"), (0.1, "0.1"), (Decimal("0.025"), "0.025")],
)
def test_amounts_are_exact_decimals_taken_as_written(value: Any, expected: str) -> None:
    assert usd_amount(value, "budget_usd") == Decimal(expected)


@pytest.mark.parametrize("bad", [0, -1, "x", float("inf"), True, None, [1]])
def test_a_bad_amount_names_the_field_and_the_range(bad: Any) -> None:
    with pytest.raises(ValidationError, match=r"budget_usd: .* allowed: a number of USD > 0"):
        usd_amount(bad, "budget_usd")


@given(st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False))
def test_micros_round_up_never_below_the_amount(amount: Decimal) -> None:
    micros = to_micros(amount)
    assert from_micros(micros) >= amount
    assert from_micros(micros) - amount < Decimal("0.000001")


def test_a_budget_in_micros_is_rounded_down_and_split_into_parts_that_fit() -> None:
    assert limit_micros(Decimal("0.0000019")) == 1
    parts = [split_usd(Decimal(10), 3)] * 3
    assert sum(parts) <= 10 and parts[0] == Decimal("3.333333")
    assert FlowLimits(budget_usd=10).split(4).budget_usd == Decimal("2.5")


def test_usd_is_shown_with_cents_and_every_significant_digit() -> None:
    shown = [format_usd(Decimal(x)) for x in ("1.5", "0.0375", "10", "-0.25")]
    assert shown == ["$1.50", "$0.0375", "$10.00", "-$0.25"]
    assert format_usd(None) == "-"


def test_an_empty_balance_refusal_is_its_own_permission_error() -> None:
    assert error_class_for(403, 402) is InsufficientBalanceError
    assert error_class_for(402) is InsufficientBalanceError
    assert error_class_for(403, 403) is PermissionDeniedError
    assert issubclass(InsufficientBalanceError, PermissionDeniedError)


# -- shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("0.025 * ($exists(num_images) ? num_images : 1)", {"num_images"}),
        ("0.03 * duration", {"duration"}),
        ("", set()),
        ("base * (resolution = '4k' ? 2 : 1) and true", {"base", "resolution"}),
        ("$lookup($, 'duration') * 0.1", {"duration"}),
    ],
)
def test_a_formula_names_the_inputs_that_drive_the_price(formula: str, names: set[str]) -> None:
    assert formula_inputs(formula) == names


def test_price_rules_keep_only_schema_inputs_with_their_defaults() -> None:
    schema = {
        "api_schemas": [
            {
                "request_schema": {
                    "type": "object",
                    "properties": {"duration": {"default": 5}, "prompt": {}, "num_images": {}},
                }
            }
        ]
    }
    raw = [
        {"model_id": "v/video", "formula": "0.03 * duration + surcharge", "api_schema": schema},
        {"model_id": "f/flat", "formula": ""},
        {"model_id": "n/none"},
        {"formula": "x"},
        "junk",
    ]
    body = msgspec.json.encode({"code": 200, "message": "success", "data": raw})
    rules = price_rules(decode_models(body).models)
    assert set(rules) == {"v/video", "f/flat"}
    assert rules["v/video"] == PriceRule("v/video", frozenset({"duration"}), {"duration": 5})
    assert rules["f/flat"].priced == frozenset()


def test_inputs_of_one_shape_share_a_key_and_defaults_are_quoted() -> None:
    rule = PriceRule(MODEL, frozenset({"duration"}), {"duration": 5})
    a, quoted = shape_of(MODEL, {"prompt": "a", "seed": 1}, rule)
    b, _ = shape_of(MODEL, {"prompt": "b", "size": "1*1", "duration": 5}, rule)
    c, _ = shape_of(MODEL, {"prompt": "c", "duration": 8}, rule)
    assert a == b != c
    assert quoted == {"prompt": "a", "seed": 1, "duration": 5}


def test_without_a_rule_only_text_urls_and_seeds_are_left_out_of_the_shape() -> None:
    def key(inputs: dict[str, Any]) -> bytes:
        return shape_of(MODEL, inputs, None)[0]

    base = {"prompt": "a", "image": "https://x/1.png", "seed": 1, "size": "512*512"}
    other = {"prompt": "b", "image": "https://y/2.png", "seed": 2, "size": "512*512"}
    assert key(base) == key(other)
    assert key(base) != key({**base, "size": "1024*1024"})
    assert key({"loras": [{"path": "https://a", "scale": 1}]}) == key(
        {"loras": [{"path": "https://b", "scale": 1}]}
    )
    assert key({"loras": [{"path": "a", "scale": 1}]}) != key(
        {"loras": [{"path": "a", "scale": 2}]}
    )
    assert key({"negative_prompt": "x" * 10, "caption": "y"}) == key({})


# -- decoding ---------------------------------------------------------------------------


def test_money_is_decoded_from_json_numbers_without_a_float() -> None:
    env = envelope_decoder.decode(
        b'{"code":200,"data":{"price":0.07500000000000001,"discounted_price":0.06,'
        b'"discount_rate":0.2,"model_id":"m"}}'
    )
    quote = quote_from(MODEL, env.data)
    assert quote is not None
    assert quote.price_usd == Decimal("0.07500000000000001")
    assert quote.cost_usd == Decimal("0.06")


@pytest.mark.parametrize(
    ("data", "cost"),
    [
        ({"unit_price": 3}, "3"),
        ({"price": "0.5"}, "0.5"),
        ({"discounted_price": Decimal("0.4")}, "0.4"),
        ({"price": "junk"}, None),
        (None, None),
        ([], None),
    ],
)
def test_a_quote_is_read_from_any_of_its_forms(data: Any, cost: str | None) -> None:
    quote = quote_from(MODEL, data)
    assert (quote.cost_usd if quote else None) == (Decimal(cost) if cost else None)


def _billing(task: str, kind: str, price: Any, uuid: str = "") -> dict[str, Any]:
    return {
        "uuid": uuid or f"{task}-{kind}",
        "billing_type": kind,
        "price": price,
        "created_at": "2025-01-01T00:00:00Z",
        "prediction": {"uuid": task, "model_uuid": MODEL},
        "order": {"uuid": f"o-{task}"},
    }


def test_odd_billing_entries_are_skipped_not_fatal() -> None:
    data = {
        "has_more": True,
        "items": [
            _billing("t1", "deduct", Decimal("0.025")),
            _billing("t1", "refund", Decimal("-0.025")),  # a signed refund counts as one
            _billing("../etc", "deduct", 1),
            _billing("t2", "deduct", "nan?"),
            {"billing_type": "deduct"},
            "junk",
        ],
    }
    records, more = billing_page(data)
    assert more is True
    assert [(r.task_id, r.kind, r.amount_usd) for r in records] == [
        ("t1", "deduct", Decimal("0.025")),
        ("t1", "refund", Decimal("0.025")),
    ]
    assert billing_page(None) == ([], False)


def test_costs_count_a_record_seen_twice_once_and_list_every_task_asked() -> None:
    records, _ = billing_page({"items": [_billing("t1", "deduct", 1)] * 2})
    costs = costs_from_records(["t1", "t9"], records)
    assert costs["t1"].charged_usd == 1 and costs["t1"].known
    assert not costs["t9"].known and costs["t9"].net_usd == 0


def test_history_entries_accept_input_or_inputs_and_skip_bad_ids() -> None:
    data = {
        "items": [
            {"id": "a1", "model": MODEL, "input": {"prompt": "x"}, "created_at": "2025-01-01"},
            {"id": "a2", "inputs": {"prompt": "y"}, "error": None, "outputs": "nope"},
            {"id": "bad id"},
            7,
        ]
    }
    entries = history_page(data)
    assert [(e.id, e.input) for e in entries] == [("a1", {"prompt": "x"}), ("a2", {"prompt": "y"})]
    assert entries[1].outputs == [] and entries[1].error == ""
    assert entries[0].created is not None and entries[0].created.tzinfo is not None


def test_search_times_are_utc_iso_8601() -> None:
    assert iso_time(0, "t") == "1970-01-01T00:00:00Z"
    assert iso_time("2025-01-01", "t") == "2025-01-01"
    with pytest.raises(ValidationError, match="created_after"):
        iso_time(object(), "created_after")  # type: ignore[arg-type]


# -- matching ---------------------------------------------------------------------------

T0 = 1_750_000_000.0


def entry(task: str, when: float, inp: dict[str, Any] | None, model: str = MODEL) -> HistoryEntry:
    iso = iso_time(when, "t")
    return HistoryEntry(id=task, model=model, input=inp, created_at=iso)


def test_inputs_agree_on_common_keys_with_numbers_by_value() -> None:
    assert agreement({"prompt": "a", "n": 1, "x": 1}, {"prompt": "a", "n": 1.0, "d": 5}) == 2
    assert agreement({"prompt": "a"}, {"prompt": "b"}) == -1
    assert agreement({"prompt": "a"}, {"other": 1}) == 0


def test_a_lost_submit_matches_its_input_in_its_window_only() -> None:
    lost = LostSubmit(MODEL, {"prompt": "fox", "num_images": 2}, sent_at=T0, lost_at=T0 + 30)
    entries = [
        entry("early", T0 - 3600, {"prompt": "fox", "num_images": 2}),  # before the window
        entry("other", T0 + 5, {"prompt": "dog"}),
        entry("model", T0 + 5, {"prompt": "fox", "num_images": 2}, model="x/y"),
        entry("mine", T0 + 10, {"prompt": "fox", "num_images": 2, "seed": -1}),
    ]
    [found] = match([lost], entries)
    assert (found.task_id, found.matched_on) == ("mine", "input")
    [none] = match([lost], entries, exclude={"mine"})
    assert not none.found


def test_without_echoed_inputs_only_an_unambiguous_task_is_matched() -> None:
    one = LostSubmit(MODEL, {"prompt": "a"}, sent_at=T0, lost_at=T0 + 10)
    two = LostSubmit(MODEL, {"prompt": "b"}, sent_at=T0 + 5, lost_at=T0 + 15)
    [alone] = match([one], [entry("t1", T0 + 3, None)])
    assert (alone.task_id, alone.matched_on) == ("t1", "model_and_time")
    both = match([one, two], [entry("t1", T0 + 3, None)])
    assert [r.found for r in both] == [False, False]  # which of the two made it? unknown
    assert not match([one], [entry("t1", T0 + 3, None), entry("t2", T0 + 4, None)])[0].found


def test_identical_lost_submits_get_distinct_tasks() -> None:
    lost = [LostSubmit(MODEL, {"prompt": "twin"}, sent_at=T0 + i) for i in range(3)]
    entries = [entry(f"t{i}", T0 + 1 + i, {"prompt": "twin"}) for i in range(2)]
    found = match(lost, entries)
    assert sorted(r.task_id or "" for r in found) == ["", "t0", "t1"]


# -- budgets ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_hold_gives_back_at_most_what_it_reserved() -> None:
    from wavespeed_async._core.spend import Quote

    budget = LocalBudget(Decimal("0.1"), "batch")
    assert await budget.reserve(60_000) and not await budget.reserve(60_000)
    hold = Hold(Quote(MODEL, Decimal("0.06"), Decimal("0.06")), 60_000, (budget,))
    assert hold.credit(100_000) == 60_000 and hold.credit(1) == 0
    assert budget.committed_usd == 0


def test_only_a_provable_refusal_gives_a_reservation_back() -> None:
    from wavespeed_async import (
        BadRequestError,
        ConnectError,
        DecodeError,
        ServerError,
        SubmissionOutcomeUnknown,
        TransportError,
    )

    assert refused_before_creation(BadRequestError("no", status=400))
    assert refused_before_creation(ConnectError("no"))
    assert not refused_before_creation(ServerError("x", status=500, task_id="t1"))
    assert not refused_before_creation(TransportError("lost"))
    assert not refused_before_creation(DecodeError("odd"))
    assert not refused_before_creation(
        SubmissionOutcomeUnknown("lost", model=MODEL, input={}, cause_kind="reset")
    )
    assert not refused_before_creation(RuntimeError("a bug"))


def test_money_records_survive_a_round_trip_through_json() -> None:
    from wavespeed_async import Cost

    cost = costs_from_records(["t1"], billing_page({"items": [_billing("t1", "deduct", 1)]})[0])
    again = msgspec.json.decode(msgspec.json.encode(cost["t1"]), type=Cost)
    assert again == cost["t1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T13:43:00.712768768Z", datetime(2026, 12, 7, 13, 43, 0, 712768, timezone.utc)),
        ("2026-12-07T13:43:00.7Z", datetime(2026, 12, 7, 13, 43, 0, 700000, timezone.utc)),
        ("2026-12-07T13:43:00Z", datetime(2026, 12, 7, 13, 43, 0, tzinfo=timezone.utc)),
        ("2026-12-07T14:43:00.5+0100", datetime(2026, 12, 7, 13, 43, 0, 500000, timezone.utc)),
        ("2026-12-07T13:43:00", datetime(2026, 12, 7, 13, 43, 0, tzinfo=timezone.utc)),
        ("yesterday", None),
        ("", None),
    ],
)
def test_history_times_are_read_on_every_supported_python(
    text: str, expected: datetime | None
) -> None:
    assert parse_time(text) == expected
