"""Money: quotes, charges at creation, refunds, billing records, balance and usage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from wavespeed_async.emulator import (
    INSUFFICIENT_BALANCE_CODE,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
    ManualClock,
)
from wavespeed_async.emulator.__main__ import build_config, parse_args

from .helpers import DEV, LORA, PRO, UPSCALER, VIDEO, call, in_process, run_task

pytestmark = pytest.mark.anyio


async def quote(emu: Emulator, model: str, inputs: Any, path: str = "price") -> tuple[int, Any]:
    return await call(emu, "POST", f"/api/v3/model/{path}", {"model_id": model, "inputs": inputs})


@pytest.mark.parametrize(
    ("model", "inputs", "price"),
    [
        (DEV, {}, "0.025"),
        (DEV, {"num_images": 3}, "0.075"),
        (PRO, {"num_images": 4, "prompt": "x"}, "0.16"),
        (LORA, {"num_images": 2}, "0.04"),
        (VIDEO, {"duration": 5}, "0.15"),
        (VIDEO, {"duration": 8}, "0.24"),
        # Without the input that drives the formula, the API falls back to base_price.
        (VIDEO, {}, "0.03"),
        (UPSCALER, {"target_resolution": "8k"}, "0.01"),
    ],
)
async def test_price_quotes_follow_each_models_rule(
    model: str, inputs: dict[str, Any], price: str
) -> None:
    emu, _ = in_process()
    async with emu:
        status, body = await quote(emu, model, inputs)
        assert status == 200
        assert body["data"] == {
            "model_id": model,
            "price": float(price),
            "discounted_price": float(price),
            "discount_rate": 0,
            "currency": "USD",
        }
        assert emu.stats().tasks_created == 0  # a quote is free
        assert emu.balance == Decimal(100)


async def test_a_discount_lowers_the_quote_and_the_charge() -> None:
    emu, _ = in_process(discount_rate=0.2)
    async with emu:
        _, body = await quote(emu, PRO, {"num_images": 3})
        assert body["data"]["price"] == 0.12
        assert body["data"]["discounted_price"] == 0.096
        assert body["data"]["discount_rate"] == 0.2
        await run_task(emu, PRO, {"prompt": "x", "num_images": 3})
        [record] = emu.billing_records()
        assert (record.price, record.origin_price) == (Decimal("0.096"), Decimal("0.12"))
        assert emu.balance == Decimal("99.904")


async def test_price_answers_404_for_an_unknown_model_and_400_for_a_bad_body() -> None:
    emu, _ = in_process()
    async with emu:
        status, body = await quote(emu, "acme/nothing", {})
        assert (status, body["code"], body["data"]) == (404, 404, None)
        status, body = await call(emu, "POST", "/api/v3/model/price", {"inputs": {}})
        assert status == 400
        assert body["message"].startswith("model_id: required")
        status, body = await quote(emu, DEV, [1])
        assert status == 400
        assert body["message"].startswith("inputs:")


async def test_model_price_can_be_switched_off_to_exercise_the_pricing_fallback() -> None:
    emu, _ = in_process(serve_model_price=False)
    async with emu:
        status, body = await quote(emu, DEV, {"num_images": 2})
        assert (status, body["data"]) == (404, None)
        status, body = await quote(emu, DEV, {"num_images": 2}, path="pricing")
        assert status == 200
        assert body["data"] == {"model_id": DEV, "unit_price": 0.05, "currency": "USD"}
        status, _ = await quote(emu, "acme/nothing", {}, path="pricing")
        assert status == 404


async def test_a_task_is_charged_when_created_and_refunded_when_it_fails() -> None:
    emu, _ = in_process(initial_balance=Decimal("1.00"))
    async with emu:
        ok = await run_task(emu, DEV, {"prompt": "fine [latency:1000]", "num_images": 2})
        bad = await run_task(emu, PRO, {"prompt": "broken [fail:5000] [latency:1000]"})
        # Charged at once, long before either ends.
        assert emu.balance == Decimal("0.91")
        assert emu.stats().charged_usd == Decimal("0.09")
        assert emu.stats().refunded_usd == Decimal(0)
        await emu.advance(2)
        assert emu.balance == Decimal("0.95")
        stats = emu.stats()
        assert (stats.charged_usd, stats.refunded_usd) == (Decimal("0.09"), Decimal("0.04"))
        assert stats.balance == Decimal("0.95")
        kinds = [(r.billing_type, r.task_id, r.price) for r in emu.billing_records()]
        assert kinds == [
            ("deduct", ok["id"], Decimal("0.05")),
            ("deduct", bad["id"], Decimal("0.04")),
            ("refund", bad["id"], Decimal("0.04")),
        ]
        record = emu.task(bad["id"])
        assert record is not None
        assert record.refunded
        _, body = await call(emu, "GET", "/api/v3/balance")
        assert body["data"] == {"balance": 0.95}


async def test_balance_is_exact_over_many_charges() -> None:
    emu, _ = in_process(initial_balance=0.3)
    async with emu:
        for i in range(10):
            await run_task(emu, UPSCALER, {"image": f"https://example.com/{i}.png"})
        # 0.3 - 10 * 0.01 in floats is 0.19999999999999998.
        assert emu.balance == Decimal("0.20")
        answer = await emu.handle("GET", "/api/v3/balance", {"Authorization": "Bearer k"})
        assert b'"balance":0.20' in answer.body


def test_initial_balance_takes_decimals_and_floats_exactly() -> None:
    assert EmulatorConfig(initial_balance=0.1).initial_balance == Decimal("0.1")
    assert EmulatorConfig(initial_balance=Decimal("5.25")).initial_balance == Decimal("5.25")
    assert EmulatorConfig(prices={DEV: 0.07}).prices[DEV] == Decimal("0.07")
    with pytest.raises(ValueError, match="initial_balance"):
        EmulatorConfig(initial_balance=float("nan"))
    with pytest.raises(ValueError, match="discount_rate"):
        EmulatorConfig(discount_rate=1.5)
    with pytest.raises(ValueError, match="prices"):
        EmulatorConfig(prices={DEV: -1})
    args = parse_args(["--initial-balance", "0.1", "--discount-rate", "0.25"])
    config = build_config(args)
    assert config.initial_balance == Decimal("0.1")
    assert config.discount_rate == Decimal("0.25")
    with pytest.raises(SystemExit):
        parse_args(["--initial-balance", "lots"])


async def test_enforce_balance_refuses_a_task_that_costs_more_than_is_left() -> None:
    emu, _ = in_process(initial_balance=Decimal("0.05"), enforce_balance=True)
    async with emu:
        status, body = await call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "x", "num_images": 3})
        assert status == 403
        assert body["code"] == INSUFFICIENT_BALANCE_CODE == 402
        assert body["data"] is None
        assert "insufficient balance" in body["message"]
        assert "$0.075" in body["message"]
        assert emu.stats().tasks_created == 0
        assert emu.stats().balance_refusals == 1
        # Exactly what is left is fine; then nothing more.
        await run_task(emu, DEV, {"prompt": "x", "num_images": 2})
        assert emu.balance == Decimal(0)
        status, body = await call(emu, "POST", f"/api/v3/{DEV}", {"prompt": "y"})
        assert (status, body["code"]) == (403, 402)
        assert emu.billing_records()[-1].billing_type == "deduct"
        assert len(emu.billing_records()) == 1


async def test_without_enforce_balance_the_balance_may_go_below_zero() -> None:
    emu, _ = in_process(initial_balance=0)
    async with emu:
        await run_task(emu, PRO, {"prompt": "x"})
        assert emu.balance == Decimal("-0.04")


async def billings(emu: Emulator, **query: Any) -> tuple[int, Any]:
    return await call(emu, "POST", "/api/v3/billings/search", query)


async def test_billing_search_lists_records_newest_first_with_filters_and_pages() -> None:
    emu, _ = in_process()
    async with emu:
        ids = []
        for i in range(5):
            model = DEV if i % 2 == 0 else PRO
            fail = " [fail]" if i == 3 else ""
            ids.append((await run_task(emu, model, {"prompt": f"p{i}{fail}"}))["id"])
            await emu.advance(60)
        status, body = await billings(emu, page=1, page_size=4)
        assert status == 200
        data = body["data"]
        assert (data["page"], data["has_more"]) == (1, True)
        assert len(data["items"]) == 4
        first = data["items"][0]
        assert set(first) == {"uuid", "billing_type", "price", "created_at", "order", "prediction"}
        # Newest first: task 4's charge, then the refund of task 3 (it failed at once).
        assert (first["billing_type"], first["prediction"]["uuid"]) == ("deduct", ids[4])
        assert first["order"] == {
            "uuid": first["order"]["uuid"],
            "state": "paid",
            "price": 0.025,
            "origin_price": 0.025,
        }
        refund = data["items"][1]
        assert (refund["billing_type"], refund["price"]) == ("refund", 0.04)
        assert refund["order"]["state"] == "refunded"
        assert refund["prediction"] == {"uuid": ids[3], "model_uuid": PRO, "status": "failed"}
        # The charge of the refunded task shows its order refunded too (same order).
        assert data["items"][2]["order"]["uuid"] == refund["order"]["uuid"]
        assert data["items"][2]["order"]["state"] == "refunded"
        _, body = await billings(emu, page=2, page_size=4)
        assert (body["data"]["has_more"], len(body["data"]["items"])) == (False, 2)
        _, body = await billings(emu, billing_type="refund")
        assert [i["prediction"]["uuid"] for i in body["data"]["items"]] == [ids[3]]
        _, body = await billings(emu, billing_type="deduct", model_uuid=DEV)
        assert [i["prediction"]["uuid"] for i in body["data"]["items"]] == [ids[4], ids[2], ids[0]]
        _, body = await billings(emu, prediction_uuids=[ids[1], ids[3]])
        assert {i["prediction"]["uuid"] for i in body["data"]["items"]} == {ids[1], ids[3]}
        assert len(body["data"]["items"]) == 3
        # A window by time: the records of tasks 1 and 2 (created at 60 s and 120 s).
        created = [
            i["created_at"] for i in (await billings(emu, page_size=100))[1]["data"]["items"]
        ]
        start, end = created[-2], created[-3]
        _, body = await billings(emu, start_time=start, end_time=end)
        assert [i["prediction"]["uuid"] for i in body["data"]["items"]] == [ids[2], ids[1]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "1"}, "page"),
        ({"billing_type": "charge"}, "billing_type"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": 1700000000}, "end_time"),
        ({"prediction_uuids": "abc"}, "prediction_uuids"),
    ],
)
async def test_billing_search_refuses_bad_queries_naming_the_field(
    query: dict[str, Any], field: str
) -> None:
    emu, _ = in_process()
    async with emu:
        status, body = await billings(emu, **query)
        assert status == 400
        assert body["message"].startswith(f"{field}:")
        assert "allowed" in body["message"] or "expected" in body["message"]


async def test_usage_stats_sums_spend_per_model_and_day() -> None:
    emu, _ = in_process()
    async with emu:
        await run_task(emu, DEV, {"prompt": "a", "num_images": 2})
        await run_task(emu, DEV, {"prompt": "b [fail]"})
        await run_task(emu, PRO, {"prompt": "c"})
        await emu.advance(1)
        status, body = await call(emu, "POST", "/api/v3/user/usage_stats", {})
        assert status == 200
        data = body["data"]
        assert data["summary"] == {
            "total_cost": 0.09,
            "total_requests": 3,
            "success_requests": 2,
        }
        assert data["per_model_usage"] == [
            {"model_uuid": DEV, "total_cost": 0.05, "total_count": 2},
            {"model_uuid": PRO, "total_cost": 0.04, "total_count": 1},
        ]
        [day] = data["daily_usage"]
        assert (day["amount"], day["count"]) == (0.09, 3)
        status, body = await call(
            emu,
            "POST",
            "/api/v3/user/usage_stats",
            {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-03-01T00:00:00Z"},
        )
        assert status == 400
        assert "31 days" in body["message"]


async def test_billing_endpoints_need_the_key_over_http() -> None:
    config = EmulatorConfig(clock=ManualClock(), latency=LatencyProfile.fast(), api_key="right")
    async with Emulator(config) as emu, aiohttp.ClientSession() as s:
        for path in ("/api/v3/billings/search", "/api/v3/model/price", "/api/v3/predictions"):
            async with s.post(emu.base_url + path, json={}) as r:
                assert r.status == 401
        async with s.get(emu.base_url + "/api/v3/models") as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer right"}
        async with s.post(emu.base_url + "/api/v3/billings/search", headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["data"] == {"page": 1, "has_more": False, "items": []}
