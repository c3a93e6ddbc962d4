"""Injected faults (phases, determinism, force_fault) and account limits."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest

from wavespeed_async.emulator import (
    Emulator,
    EmulatorConfig,
    FaultRates,
    LatencyProfile,
    Limits,
)

from .helpers import DEV, manual, result, submit, until

pytestmark = pytest.mark.anyio

KIND_PHASE = {
    "rate_limit": ("rate_limit", "before"),
    "server_error_before": ("server_error", "before"),
    "server_error_after": ("server_error", "after"),
    "reset_before": ("reset", "before"),
    "reset_after": ("reset", "after"),
    "malformed": ("malformed", "after"),
    "stall_before": ("stall", "before"),
    "stall_after": ("stall", "after"),
}


async def _outcome(s: aiohttp.ClientSession, url: str, body: object | None = None) -> str:
    """What a client saw: ``"reset"``, ``"malformed"``, or ``"<status>[+retry]"``."""
    try:
        method = "POST" if body is not None else "GET"
        async with s.request(method, url, json=body) as r:
            raw = await r.read()
            retry = "+retry" if "Retry-After" in r.headers else ""
            if r.status == 200:
                try:
                    msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    return "malformed"
            return f"{r.status}{retry}"
    except aiohttp.ClientConnectionError:  # ClientOSError(ECONNRESET) or ServerDisconnected
        return "reset"


@pytest.mark.parametrize("kind", list(KIND_PHASE))
@pytest.mark.parametrize("how", ["forced", "rate"])
async def test_submit_fault_phase(session: aiohttp.ClientSession, kind: str, how: str) -> None:
    stats_kind, phase = KIND_PHASE[kind]
    if how == "forced":
        emu, _ = manual(stall_s=2.0)
        emu.force_fault(kind, on="submit", times=1)
    else:
        emu, _ = manual(stall_s=2.0, submit_faults=FaultRates(**{kind: 1.0}))
    async with emu:
        pending = asyncio.ensure_future(
            _outcome(session, f"{emu.base_url}/api/v3/{DEV}", {"prompt": "f"})
        )
        if stats_kind == "stall":
            await until(lambda: emu.stats().faults.get("stall", {}).get(phase) == 1)
            assert not pending.done()
            assert emu.stats().tasks_created == (1 if phase == "after" else 0)
            await emu.advance(2.0)
        outcome = await pending
        stats = emu.stats()
        assert stats.faults == {stats_kind: {phase: 1}}
        assert stats.submits_received == 1
        assert stats.tasks_created == (1 if phase == "after" or stats_kind == "stall" else 0)
        expected = {
            "rate_limit": {"429+retry"},
            "server_error_before": {"500", "502", "503+retry"},
            "server_error_after": {"500", "502", "503"},
            "reset_before": {"reset"},
            "reset_after": {"reset"},
            "malformed": {"malformed"},
            "stall_before": {"200"},
            "stall_after": {"200"},
        }[kind]
        assert outcome in expected


@pytest.mark.parametrize("kind", ["rate_limit", "server_error", "reset", "malformed", "stall"])
async def test_poll_fault_phase(session: aiohttp.ClientSession, kind: str) -> None:
    emu, _ = manual(stall_s=1.0)
    async with emu:
        _, body = await submit(session, emu, {"prompt": "p"})
        url = body["data"]["urls"]["get"]
        # aiohttp itself re-sends an idempotent GET once after a reset: reset it twice.
        times = 2 if kind == "reset" else 1
        emu.force_fault(kind, on="poll", times=times)
        pending = asyncio.ensure_future(_outcome(session, url))
        if kind == "stall":
            await until(lambda: "stall" in emu.stats().faults)
            await emu.advance(1.0)
        outcome = await pending
        assert (
            outcome
            == {
                "rate_limit": "429+retry",
                "server_error": outcome if outcome in ("500", "502", "503+retry") else "?",
                "reset": "reset",
                "malformed": "malformed",
                "stall": "200",
            }[kind]
        )
        stats = emu.stats()
        assert stats.faults == {kind: {"poll": times}}
        assert stats.polls_per_task == {body["data"]["id"]: times}
        assert stats.tasks_created == 1


async def test_aiohttp_resends_a_reset_get_on_a_reused_connection(
    session: aiohttp.ClientSession,
) -> None:
    """Documents an aiohttp (3.10+) behaviour: a reset GET is re-sent once, unseen."""
    emu, _ = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": "p"})
        emu.force_fault("reset", on="poll", times=1)
        outcome = await _outcome(session, body["data"]["urls"]["get"])
        stats = emu.stats()
        assert stats.faults == {"reset": {"poll": 1}}
        if outcome == "200":
            assert stats.polls_total == 2
        else:
            assert outcome == "reset"


async def test_server_error_variants(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(submit_faults=FaultRates(server_error_before=1.0))
    async with emu:
        seen = set()
        for _ in range(30):
            async with session.post(f"{emu.base_url}/api/v3/{DEV}", json={"prompt": "x"}) as r:
                seen.add(r.status)
                raw = await r.read()
                if r.status == 502:
                    assert r.content_type == "text/html"
                else:
                    assert msgspec.json.decode(raw)["code"] == r.status
                assert ("Retry-After" in r.headers) == (r.status == 503)
        assert seen == {500, 502, 503}
        assert emu.stats().tasks_created == 0


async def _sequence(seed: int) -> tuple[list[str], list[str]]:
    rates = FaultRates(
        rate_limit=0.1,
        server_error_before=0.1,
        server_error_after=0.1,
        reset_before=0.1,
        reset_after=0.1,
        malformed=0.1,
    )
    config = EmulatorConfig(
        seed=seed, latency=LatencyProfile.fast(), submit_faults=rates, poll_faults=rates
    )
    outcomes = []
    async with Emulator(config) as emu:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as s:
            url = f"{emu.base_url}/api/v3/{DEV}"
            outcomes.extend([await _outcome(s, url, {"prompt": i}) for i in range(40)])
            for i in range(40):
                url = f"{emu.base_url}/api/v3/predictions/{i:032x}/result"
                outcomes.append(await _outcome(s, url))
        ids = list(emu.stats().tasks)
    return outcomes, ids


async def test_faults_repeat_for_the_same_seed() -> None:
    first, ids1 = await _sequence(7)
    second, ids2 = await _sequence(7)
    other, _ = await _sequence(8)
    assert first == second
    assert ids1 == ids2
    assert first != other
    assert len(set(first)) >= 4


async def test_force_fault_then_normal(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        emu.force_fault("reset_after", on="submit", times=2)
        url = f"{emu.base_url}/api/v3/{DEV}"
        outcomes = [await _outcome(session, url, {"prompt": "same"}) for _ in range(3)]
        assert outcomes == ["reset", "reset", "200"]
        stats = emu.stats()
        assert stats.tasks_created == 3
        assert stats.duplicate_prompts == ["same"]
        assert stats.faults == {"reset": {"after": 2}}
        with pytest.raises(ValueError, match="kind"):
            emu.force_fault("explode")
        with pytest.raises(ValueError, match="kind"):
            emu.force_fault("reset", on="submit")


async def test_fault_rates_validation() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        FaultRates(rate_limit=1.5)
    with pytest.raises(ValueError, match="sum"):
        FaultRates(rate_limit=0.6, malformed=0.6)


async def test_per_minute_limit(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(limits=Limits(submits_per_minute=2))
    async with emu:
        url = f"{emu.base_url}/api/v3/{DEV}"
        assert (await submit(session, emu, {"prompt": "a"}))[0] == 200
        await emu.advance(10)
        assert (await submit(session, emu, {"prompt": "b"}))[0] == 200
        async with session.post(url, json={"prompt": "c"}) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "50"
            assert (await r.json())["code"] == 429
        assert emu.stats().tasks_created == 2
        assert emu.stats().rate_limited == 1
        assert emu.stats().faults == {}
        await emu.advance(50)
        assert (await submit(session, emu, {"prompt": "c"}))[0] == 200
        async with session.post(url, json={"prompt": "d"}) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "10"
        assert emu.stats().tasks_created == 3


async def test_running_limit_keeps_tasks_created(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(limits=Limits(max_running=1))
    async with emu:
        ids = [
            (await submit(session, emu, {"prompt": f"r{i} [latency:1000]"}))[1]["data"]["id"]
            for i in range(3)
        ]
        await emu.advance(0.5)
        statuses = [(await result(session, emu, t))["status"] for t in ids]
        assert statuses == ["processing", "created", "created"]
        await emu.advance(0.6)  # t=1.1: first done at 1.0, second started then
        statuses = [(await result(session, emu, t))["status"] for t in ids]
        assert statuses == ["completed", "processing", "created"]
        await emu.advance(2)
        statuses = [(await result(session, emu, t))["status"] for t in ids]
        assert statuses == ["completed"] * 3
        stats = emu.stats()
        assert stats.max_running == 1
        assert stats.tasks[ids[1]].started_at == pytest.approx(1.0)
        assert stats.tasks[ids[2]].finished_at == pytest.approx(2.8)


def test_tiers() -> None:
    assert Limits.tier("bronze") == Limits(submits_per_minute=2, max_running=2)
    assert Limits.tier("Bronze", variant="second") == Limits(10, 3)
    assert Limits.tier("ultra").max_running == 10000
    with pytest.raises(ValueError, match="tier"):
        Limits.tier("platinum")


def test_latency_profiles() -> None:
    fast = LatencyProfile.fast()
    doubled = fast.scaled(2)
    assert doubled.default.inference_ms == tuple(2 * x for x in fast.default.inference_ms)
    realistic = LatencyProfile.realistic().for_model(DEV)
    assert realistic.inference_ms[0] == 1000
    assert realistic.inference_ms[2] == 6000
