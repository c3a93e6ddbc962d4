"""Quotes, budgets, costs, history and reconcile against the in-process emulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CANARY_KEY, NullShare, fast_poll, fast_retry
from wavespeed_async import (
    BudgetExceeded,
    Client,
    ConnectError,
    FlowLimits,
    HTTPRequest,
    HTTPResponse,
    InsufficientBalanceError,
    LostSubmit,
    NotFoundError,
    PermissionDeniedError,
    RetryConfig,
    SubmissionOutcomeUnknown,
    ValidationError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, EmulatorTransport, LatencyProfile
from wavespeed_async.gallery import write_gallery

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
VIDEO = "wavespeed-ai/wan-2.2/t2v-480p"
LORA = "wavespeed-ai/flux-dev-lora"
UPSCALER = "wavespeed-ai/image-upscaler"


def emulator_of(**config: Any) -> Emulator:
    return Emulator(EmulatorConfig(seed=5, latency=LatencyProfile.fast(), **config), port=None)


def client_of(emu: Emulator, **kwargs: Any) -> Client:
    kwargs.setdefault("retry", fast_retry())
    return Client(
        CANARY_KEY, base_url=emu.base_url, transport=emu.transport(), poll=fast_poll(), **kwargs
    )


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with emulator_of() as e:
        yield e


# -- quotes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "inputs", "expected"),
    [
        (DEV, {"prompt": "a fox"}, "0.025"),  # per image
        (DEV, {"prompt": "a fox", "num_images": 3}, "0.075"),
        (PRO, {"prompt": "a fox", "num_images": 2}, "0.08"),
        (LORA, {"prompt": "a fox", "loras": [{"path": "a/b", "scale": 1}]}, "0.02"),
        (VIDEO, {"prompt": "a fox", "duration": 8}, "0.24"),  # per second
        (VIDEO, {"prompt": "a fox"}, "0.15"),  # the default duration, not the base price
        (UPSCALER, {"image": "https://example.com/a.png"}, "0.01"),  # per task
    ],
)
async def test_a_quote_per_model_kind_is_what_the_task_is_charged(
    emu: Emulator, model: str, inputs: dict[str, Any], expected: str
) -> None:
    async with client_of(emu) as client:
        quote = await client.quote(model, inputs)
        assert quote.model == model
        assert quote.cost_usd == Decimal(expected)
        assert quote.currency == "USD"
        await client.run(model, inputs)
    [record] = emu.billing_records()
    assert record.price == quote.cost_usd  # the quote is the charge


async def test_a_quote_carries_the_discount_and_charges_the_discounted_price() -> None:
    async with emulator_of(discount_rate=Decimal("0.2")) as emu, client_of(emu) as client:
        quote = await client.quote(PRO, {"prompt": "x"})
        assert (quote.price_usd, quote.discounted_price_usd) == (Decimal("0.04"), Decimal("0.032"))
        assert quote.discount_rate == Decimal("0.2")


async def test_without_the_price_endpoint_quotes_come_from_the_older_pricing_endpoint() -> None:
    async with emulator_of(serve_model_price=False) as emu, client_of(emu) as client:
        first = await client.quote(DEV, {"prompt": "x", "num_images": 2})
        second = await client.quote(DEV, {"prompt": "x", "num_images": 3})
    assert (first.cost_usd, second.cost_usd) == (Decimal("0.05"), Decimal("0.075"))


async def test_a_model_the_api_cannot_price_is_a_not_found_error(emu: Emulator) -> None:
    async with client_of(emu) as client:
        with pytest.raises(NotFoundError):
            await client.quote("someone/unknown-model", {"prompt": "x"})
        with pytest.raises(NotFoundError):  # remembered: not asked again at once
            await client.quote("someone/unknown-model", {"prompt": "y"})
        assert client.spend_status().quote_requests == 1


async def test_a_batch_of_one_shape_costs_one_quote_request(emu: Emulator) -> None:
    inputs = [{"prompt": f"prompt {i}", "seed": i} for i in range(200)]
    inputs += [{"prompt": "two", "num_images": 2}] * 5
    async with client_of(emu) as client:
        quote = await client.quote_many(DEV, inputs)
        status = client.spend_status()
    assert len(quote.quotes) == 205
    assert quote.total_usd == 200 * Decimal("0.025") + 5 * Decimal("0.05")
    assert [(m.model, m.jobs) for m in quote.by_model] == [(DEV, 205)]
    assert status.quote_requests == 2  # one per shape: one and two images
    assert status.quotes_reused == 203


async def test_quote_many_prices_several_models_and_names_a_bad_input(emu: Emulator) -> None:
    async with client_of(emu) as client:
        quote = await client.quote_many(None, [(DEV, {"prompt": "a"}), (VIDEO, {"prompt": "b"})])
        assert [m.total_usd for m in quote.by_model] == [Decimal("0.025"), Decimal("0.15")]
        assert quote.total_usd == Decimal("0.175")
        with pytest.raises(ValidationError, match=r"inputs\[1\]"):
            await client.quote_many(DEV, [{"prompt": "a"}, 42])


# -- budgets ----------------------------------------------------------------------------


async def test_a_batch_budget_of_k_quotes_sends_exactly_k_jobs(emu: Emulator) -> None:
    inputs = [{"prompt": f"job {i}"} for i in range(12)]
    async with client_of(emu) as client:
        async with client.run_many(DEV, inputs, budget_usd=Decimal("0.1")) as run:
            results = [r async for r in run]
        progress = run.progress
    sent = [r for r in results if r.id is not None]
    held = [r for r in results if isinstance(r.error, BudgetExceeded)]
    assert len(sent) == 4 and all(r.ok for r in sent)
    assert len(held) == 8
    assert emu.stats().tasks_created == 4
    assert emu.stats().charged_usd == Decimal("0.1")
    for r in held:
        assert isinstance(r.error, BudgetExceeded)
        assert r.error.quote.cost_usd == Decimal("0.025")
        assert r.error.budget_usd == Decimal("0.1")
        assert r.error.scope == "batch"
        assert r.cost_usd == 0  # never sent: nothing charged
    assert (progress.held_back, progress.completed) == (8, 4)
    assert (progress.spent_usd, progress.budget_usd) == (Decimal("0.1"), Decimal("0.1"))
    assert "$0.10 / $0.10 spent" in str(progress)
    assert "8 over budget" in str(progress)


async def test_a_cheaper_job_still_fits_after_a_dearer_one_was_held_back(emu: Emulator) -> None:
    inputs = [{"prompt": "a", "num_images": 3}, {"prompt": "b", "num_images": 4}, {"prompt": "c"}]
    async with client_of(emu) as client:
        async with client.run_many(DEV, inputs, budget_usd="0.1", concurrency=1) as run:
            results = sorted([r async for r in run], key=lambda r: r.index)
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, BudgetExceeded)
    assert emu.stats().charged_usd == Decimal("0.1")


async def test_the_clients_budget_holds_for_every_call(emu: Emulator) -> None:
    async with client_of(emu, limits=FlowLimits(budget_usd="0.05")) as client:
        await client.run(DEV, {"prompt": "one"})
        await client.submit(DEV, {"prompt": "two"})
        with pytest.raises(BudgetExceeded) as info:
            await client.run(DEV, {"prompt": "three"})
        assert info.value.scope == "client"
        assert info.value.committed_usd == Decimal("0.05")
        async with client.run_many(DEV, [{"prompt": "four"}]) as run:
            [r] = [r async for r in run]
        assert isinstance(r.error, BudgetExceeded)
        assert run.progress.spent_usd == Decimal("0.05")
        status = client.spend_status()
    assert (status.budget_usd, status.committed_usd, status.scope) == (
        Decimal("0.05"),
        Decimal("0.05"),
        "client",
    )
    assert emu.stats().tasks_created == 2


async def test_a_batch_budget_and_the_clients_both_apply(emu: Emulator) -> None:
    async with client_of(emu, limits=FlowLimits(budget_usd="0.05")) as client:
        inputs = [{"prompt": f"p{i}"} for i in range(5)]
        async with client.run_many(DEV, inputs, budget_usd="1") as run:
            results = [r async for r in run]
    assert sum(r.ok for r in results) == 2
    assert {r.error.scope for r in results if isinstance(r.error, BudgetExceeded)} == {"client"}


async def test_a_submit_refused_for_want_of_money_gives_its_reservation_back() -> None:
    config = {"enforce_balance": True, "initial_balance": Decimal("0.03")}
    async with (
        emulator_of(**config) as emu,
        client_of(emu, limits=FlowLimits(budget_usd=1)) as client,
    ):
        await client.run(DEV, {"prompt": "fits"})
        with pytest.raises(InsufficientBalanceError) as info:
            await client.submit(DEV, {"prompt": "too much", "num_images": 2})
        assert isinstance(info.value, PermissionDeniedError)  # a 403, as the API answers
        assert info.value.code == 402
        assert client.spend_status().committed_usd == Decimal("0.025")


async def test_a_lost_submit_keeps_its_reservation(emu: Emulator) -> None:
    async with client_of(emu, limits=FlowLimits(budget_usd=1)) as client:
        emu.force_fault("reset_after")
        with pytest.raises(SubmissionOutcomeUnknown):
            await client.submit(DEV, {"prompt": "lost"})
        emu.force_fault("reset_before")  # never reached the server: sent again, once
        await client.submit(DEV, {"prompt": "sent again"})
        assert client.spend_status().committed_usd == Decimal("0.05")
    assert emu.stats().tasks_created == 2


class _NoSubmits:
    """The emulator's transport, except that a submit never connects."""

    def __init__(self, inner: EmulatorTransport) -> None:
        self.inner = inner

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        if request.method == "POST" and f"/api/v3/{DEV}" in request.url:
            raise ConnectError("refused", method="POST", url=request.url)
        return await self.inner.send(request, max_bytes=max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_connection_never_made_gives_the_reservation_back(emu: Emulator) -> None:
    async with Client(
        CANARY_KEY,
        base_url=emu.base_url,
        transport=_NoSubmits(emu.transport()),
        limits=FlowLimits(budget_usd=1),
        retry=RetryConfig(max_submit_attempts=1, max_attempts=1),
    ) as client:
        with pytest.raises(ConnectError):
            await client.submit(DEV, {"prompt": "x"})
        assert client.spend_status().committed_usd == 0
        assert client.spend_status().quote_requests == 1


async def test_refunds_of_failed_tasks_come_back_to_the_budget(emu: Emulator) -> None:
    # Two quotes' worth: the failed task is refunded, so a third task still fits.
    inputs = [{"prompt": "[fail] first"}, {"prompt": "second"}, {"prompt": "third"}]
    async with client_of(emu) as client:
        async with client.run_many(DEV, inputs, budget_usd="0.05", concurrency=1) as run:
            results = sorted([r async for r in run], key=lambda r: r.index)
    assert [r.id is not None for r in results] == [True, True, True]
    assert [r.ok for r in results] == [False, True, True]
    assert emu.stats().refunded_usd == Decimal("0.025")
    assert emu.stats().charged_usd - emu.stats().refunded_usd == Decimal("0.05")
    assert run.progress.spent_usd == Decimal("0.05")


async def test_a_bad_budget_is_refused_naming_the_field(emu: Emulator) -> None:
    for bad in (0, -1, "lots", float("nan"), True):
        with pytest.raises(ValidationError, match="budget_usd"):
            FlowLimits(budget_usd=bad)
    async with client_of(emu) as client:
        with pytest.raises(ValidationError, match="budget_usd"):
            client.run_many(DEV, [], budget_usd=-2)


# -- costs, history, reconcile ---------------------------------------------------------------


async def test_costs_match_the_emulators_billing_records(emu: Emulator) -> None:
    inputs = [{"prompt": "ok", "num_images": 2}, {"prompt": "[fail] no"}, {"prompt": "ok too"}]
    async with client_of(emu) as client:
        async with client.run_many(DEV, inputs) as run:
            results = sorted([r async for r in run], key=lambda r: r.index)
        ids = [r.id for r in results if r.id is not None]
        costs = await client.costs(results)
        priced = await client.with_costs(results)
    assert list(costs) == ids
    records = emu.billing_records()
    for task_id, cost in costs.items():
        mine = [r for r in records if r.task_id == task_id]
        assert cost.charged_usd == sum(r.price for r in mine if r.billing_type == "deduct")
        assert cost.refunded_usd == sum(r.price for r in mine if r.billing_type == "refund")
        assert {r.id for r in cost.records} == {r.uuid for r in mine}
    assert [c.net_usd for c in costs.values()] == [Decimal("0.05"), 0, Decimal("0.025")]
    assert costs[ids[1]].refunded_usd == Decimal("0.025")
    assert [r.cost_usd for r in priced] == [Decimal("0.05"), 0, Decimal("0.025")]


async def test_costs_of_many_tasks_take_one_search_per_hundred(emu: Emulator) -> None:
    async with client_of(emu) as client:
        async with client.run_many(DEV, [{"prompt": f"p{i}"} for i in range(150)]) as run:
            ids = [r.id async for r in run if r.id is not None]
        before = emu.stats().requests_total
        costs = await client.costs(ids)
        assert emu.stats().requests_total - before == 2
    assert len(costs) == 150 and all(c.charged_usd == Decimal("0.025") for c in costs.values())


async def test_a_task_without_billing_records_has_an_unknown_cost(emu: Emulator) -> None:
    async with client_of(emu) as client:
        cost = (await client.costs(["a" * 32]))["a" * 32]
        with pytest.raises(ValidationError):
            await client.costs(["not a task id"])
    assert not cost.known and cost.net_usd == 0


async def test_the_history_is_iterated_across_pages(emu: Emulator) -> None:
    async with client_of(emu) as client:
        async with client.run_many(None, [(DEV, {"prompt": f"p{i}"}) for i in range(5)]) as run:
            ids = {r.id async for r in run}
        await client.run(PRO, {"prompt": "other model"})
        entries = [e async for e in client.predictions(model=DEV, page_size=2)]
        failed = [e async for e in client.predictions(status="failed")]
        with pytest.raises(ValidationError, match="status"):
            client.predictions(status="weird")
    assert {e.id for e in entries} == ids
    assert all(e.model == DEV and e.status == "completed" for e in entries)
    assert all(e.input is not None and e.input["prompt"].startswith("p") for e in entries)
    assert entries[0].created is not None and entries[0].prediction().ok
    assert failed == []


async def test_a_lost_submit_is_reconciled_to_its_task_with_no_second_task(
    emu: Emulator,
) -> None:
    async with client_of(emu) as client:
        await client.run(DEV, {"prompt": "a lighthouse"})  # same model, other input
        emu.force_fault("reset_after")
        with pytest.raises(SubmissionOutcomeUnknown) as info:
            await client.submit(DEV, {"prompt": "a lighthouse at dusk"})
        [found] = await client.reconcile([info.value])
    assert found.found and found.matched_on == "input"
    assert emu.stats().tasks_created == 2  # the lost submit's task, once
    assert found.task_id is not None
    task = emu.task(found.task_id)
    assert task is not None and task.prompt == "a lighthouse at dusk"


async def test_a_submit_that_never_arrived_stays_unknown(emu: Emulator) -> None:
    async with client_of(emu) as client:
        await client.run(DEV, {"prompt": "something else"})
        never = LostSubmit(DEV, {"prompt": "never arrived"}, sent_at=time.time() - 1)
        [result] = await client.reconcile([never])
        with pytest.raises(ValidationError, match="unknown"):
            await client.reconcile([ValueError("not a lost submit")])  # type: ignore[list-item]
    assert not result.found and result.task_id is None
    assert emu.stats().tasks_created == 1


async def test_reconcile_of_a_batch_gives_each_lost_submit_its_own_task(emu: Emulator) -> None:
    async with client_of(emu) as client:
        emu.force_fault("reset_after", times=2)
        inputs = [{"prompt": "twin"}, {"prompt": "twin"}, {"prompt": "single"}]
        async with client.run_many(DEV, inputs, concurrency=1) as run:
            results = sorted([r async for r in run], key=lambda r: r.index)
        lost = [r for r in results if isinstance(r.error, SubmissionOutcomeUnknown)]
        known = [r.id for r in results if r.id is not None]
        found = await client.reconcile(lost, exclude=known)
    assert len(lost) == 2
    assert all(f.found for f in found)
    assert len({f.task_id for f in found}) == 2
    assert not {f.task_id for f in found} & set(known)


async def test_the_gallery_of_a_batch_shows_each_jobs_cost_and_the_total(
    emu: Emulator, tmp_path: Path
) -> None:
    inputs = [{"prompt": "a fox", "num_images": 2}, {"prompt": "a dog [fail]"}]
    async with client_of(emu) as client:
        async with client.run_many(DEV, inputs) as run:
            results = [r async for r in run]
        for r in results:
            if r.ok and r.prediction is not None:
                await client.download(r.prediction, tmp_path)
        results = await client.with_costs(results)
    page = write_gallery(tmp_path, results).read_text(encoding="utf-8")
    assert "cost $0.05" in page  # the header: $0.05 charged, $0.025 charged and refunded
    assert page.count("· $0.05") == 1 and page.count("· $0.00") == 1


async def test_a_budget_with_a_share_that_keeps_none_is_refused_not_kept_per_process(
    emu: Emulator,
) -> None:
    share: Any = NullShare()  # the older interface: limits, no budget
    async with client_of(emu, limits=FlowLimits(budget_usd=1), share=share) as client:
        with pytest.raises(ValidationError, match="keeps no budget"):
            await client.run(DEV, {"prompt": "x"})
    assert emu.stats().tasks_created == 0
