"""Endpoints, envelopes, auth, task lifecycle, validation, sync mode, uploads, balance."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import msgspec
import pytest

from wavespeed_async._core.models import (
    balance_decoder,
    prediction_decoder,
    upload_decoder,
    webhook_secret_decoder,
)
from wavespeed_async._core.specs import MODEL_SPECS
from wavespeed_async.emulator import (
    Emulator,
    EmulatorConfig,
    EmulatorStats,
    LatencyProfile,
)

from .helpers import DEV, PRO, get, manual, result, submit, until

pytestmark = pytest.mark.anyio

ENVELOPE_KEYS = {"code", "message", "data"}


async def test_submit_envelope_and_prediction_shape(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(seed=3)
    async with emu:
        async with session.post(
            f"{emu.base_url}/api/v3/{DEV}", json={"prompt": "a cat", "seed": 5}
        ) as r:
            assert r.status == 200
            raw = await r.read()
        body = msgspec.json.decode(raw)
        assert set(body) == ENVELOPE_KEYS
        assert body["code"] == 200
        data = body["data"]
        assert len(data["id"]) == 32
        int(data["id"], 16)
        assert data["model"] == DEV
        assert data["status"] == "created"
        assert data["outputs"] == []
        assert data["error"] == ""
        assert data["urls"]["get"] == f"{emu.base_url}/api/v3/predictions/{data['id']}/result"
        assert data["created_at"].endswith("Z")
        assert "T" in data["created_at"]
        assert data["input"] == {"prompt": "a cat", "seed": 5}  # unknown extra field
        assert "executionTime" in data
        # The client's own decoder accepts it.
        pred = prediction_decoder.decode(raw).data
        assert pred is not None
        assert pred.id == data["id"]
        assert not pred.done


async def test_ids_differ_between_emulators_with_one_seed_but_outcomes_repeat() -> None:
    ids: list[list[str]] = []
    seeds: list[list[int]] = []
    for _ in range(2):
        emu, _ = manual(seed=11)
        async with emu, aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as s:
            batch = [(await submit(s, emu, {"prompt": f"p{i}"}))[1]["data"]["id"] for i in range(3)]
            records = [emu.task(t) for t in batch]
        ids.append(batch)
        seeds.append([r.seed for r in records if r is not None])
    assert not set(ids[0]) & set(ids[1])
    assert len(set(ids[0])) == 3
    # Drawn seeds (so images) and latencies still repeat for a seed.
    assert seeds[0] == seeds[1]
    assert len(seeds[0]) == 3


async def test_lifecycle_created_processing_completed(session: aiohttp.ClientSession) -> None:
    emu, clock = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": "x [latency:1000]", "num_images": 2})
        tid = body["data"]["id"]
        await emu.advance(0.05)
        assert (await result(session, emu, tid))["status"] == "created"
        await emu.advance(0.1)
        data = await result(session, emu, tid)
        assert data["status"] == "processing"
        assert data["outputs"] == []
        await emu.advance(0.9)
        data = await result(session, emu, tid)
        assert data["status"] == "completed"
        assert data["timings"]["inference"] == 900
        assert data["outputs"] == [f"{emu.base_url}/media/outputs/{tid}/{n}.png" for n in (0, 1)]
        assert data["has_nsfw_contents"] == [False, False]
        # Both documented result paths answer.
        status, other = await get(session, f"{emu.base_url}/api/v3/predictions/{tid}")
        assert status == 200
        assert other["data"]["status"] == "completed"
        rec = emu.task(tid)
        assert rec is not None
        assert rec.created_at == 0.0
        assert rec.started_at == pytest.approx(0.1)
        assert rec.finished_at == pytest.approx(1.0)
        assert rec.first_seen_finished_at == pytest.approx(clock.now())
        assert rec.polls == 4


@pytest.mark.parametrize(
    ("prompt", "code"), [("no [fail]", 5000), ("bad [fail:1200]", 1200), ("[FAIL:1403]", 1403)]
)
async def test_forced_failure(session: aiohttp.ClientSession, prompt: str, code: int) -> None:
    emu, _ = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": prompt})
        await emu.advance(1)
        data = await result(session, emu, body["data"]["id"])
        assert data["status"] == "failed"
        assert data["code"] == code
        assert data["error"]
        assert data["outputs"] == []
        assert emu.stats().tasks_failed == 1


async def test_failure_rate(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(failure_rate=1.0)
    async with emu:
        ids = [
            (await submit(session, emu, {"prompt": f"p{i}"}))[1]["data"]["id"] for i in range(20)
        ]
        await emu.advance(1)
        codes = {(await result(session, emu, t))["code"] for t in ids}
        assert codes <= {5000, 1403, 5003}
        assert 5000 in codes


async def test_nsfw_directive(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": "[nsfw] x", "num_images": 3})
        await emu.advance(1)
        assert (await result(session, emu, body["data"]["id"]))["has_nsfw_contents"] == [True] * 3


async def test_real_clock_drives_tasks(session: aiohttp.ClientSession) -> None:
    config = EmulatorConfig(latency=LatencyProfile.fast())
    async with Emulator(config) as emu:
        _, body = await submit(session, emu, {"prompt": "real"})
        for _ in range(200):
            data = await result(session, emu, body["data"]["id"])
            if data["status"] == "completed":
                break
            await asyncio.sleep(0.01)
        assert data["status"] == "completed"
        rec = emu.task(data["id"])
        assert rec is not None
        assert rec.first_seen_finished_at is not None
        assert rec.finished_at is not None
        assert rec.first_seen_finished_at >= rec.finished_at


async def test_unknown_id_is_404(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        status, body = await get(session, f"{emu.base_url}/api/v3/predictions/{'0' * 32}/result")
        assert status == 404
        assert body == {"code": 404, "message": body["message"], "data": None}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/api/v3/{DEV}"),
        ("GET", "/api/v3/predictions/abc/result"),
        ("GET", "/api/v3/balance"),
        ("GET", "/api/v3/webhook/secret"),
        ("POST", "/api/v3/predictions/delete"),
        ("POST", "/api/v3/media/upload/binary"),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer ", "Basic abc", "Bearer wrong"])
async def test_unauthorized(method: str, path: str, auth: str | None) -> None:
    emu, _ = manual(api_key="right")
    headers = {"Authorization": auth} if auth is not None else {}
    async with emu, aiohttp.ClientSession() as s:
        async with s.request(
            method, emu.base_url + path, json={"prompt": "x"}, headers=headers
        ) as r:
            assert r.status == 401
            body = await r.json()
        assert body["code"] == 401
        assert body["data"] is None
        assert emu.stats().tasks_created == 0


async def test_configured_key_accepted() -> None:
    emu, _ = manual(api_key="right")
    async with emu, aiohttp.ClientSession(headers={"Authorization": "Bearer right"}) as s:
        status, _ = await submit(s, emu, {"prompt": "x"})
        assert status == 200


def _bad_cases() -> list[tuple[str, str, Any]]:
    return [
        (DEV, "size", "256*256"),
        (DEV, "size", "1024*2048"),
        (DEV, "size", "large"),
        (DEV, "size", "1024x768"),
        (DEV, "size", " 1024*768"),
        (DEV, "num_inference_steps", 0),
        (DEV, "num_inference_steps", 51),
        (DEV, "guidance_scale", 0.5),
        (DEV, "guidance_scale", 20.5),
        (DEV, "num_images", 0),
        (DEV, "num_images", 5),
        (DEV, "seed", -2),
        (DEV, "seed", 10_000_000_000),
        (DEV, "image", 5),
        (DEV, "enable_base64_output", "yes"),
        (DEV, "enable_safety_checker", 1),
        (PRO, "aspect_ratio", "5:4"),
        (PRO, "num_images", 5),
        (PRO, "num_images", 0),
        (PRO, "seed", -2),
        (PRO, "seed", 10_000_000_000),
        (PRO, "guidance_scale", 0.9),
        (PRO, "guidance_scale", 10.5),
        (PRO, "safety_tolerance", "6"),
        (PRO, "safety_tolerance", 3),
    ]


@pytest.mark.parametrize(("model", "field", "value"), _bad_cases())
async def test_validation_names_field_and_range(
    session: aiohttp.ClientSession, model: str, field: str, value: Any
) -> None:
    emu, _ = manual()
    async with emu:
        status, body = await submit(session, emu, {"prompt": "x", field: value}, model=model)
        assert status == 400
        assert body["code"] == 400
        assert body["data"] is None
        assert body["message"].startswith(field)
        spec = MODEL_SPECS[model].by_name.get(field)
        if spec is not None:
            assert spec.allowed in body["message"]
        assert emu.stats().tasks_created == 0


@pytest.mark.parametrize("model", [DEV, PRO, "acme/unknown-model"])
@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": "   "}, {"prompt": 3}])
async def test_prompt_required(session: aiohttp.ClientSession, model: str, body: Any) -> None:
    emu, _ = manual()
    async with emu:
        status, answer = await submit(session, emu, body, model=model)
        assert status == 400
        assert "prompt" in answer["message"]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{not json"])
async def test_body_must_be_an_object(session: aiohttp.ClientSession, raw: bytes) -> None:
    emu, _ = manual()
    async with emu, session.post(f"{emu.base_url}/api/v3/{DEV}", data=raw) as r:
        assert r.status == 400
        assert (await r.json())["message"].startswith("body")


async def test_unknown_model_passthrough(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        model = "acme/video-model/v2"
        status, body = await submit(
            session, emu, {"prompt": "x", "anything": [1, 2], "duration": 99}, model=model
        )
        assert status == 200
        assert body["data"]["model"] == model
        await emu.advance(1)
        assert (await result(session, emu, body["data"]["id"]))["status"] == "completed"


async def test_sync_mode_completes(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        pending = asyncio.ensure_future(
            submit(session, emu, {"prompt": "s [latency:2000]", "enable_sync_mode": True})
        )
        await until(lambda: emu.stats().tasks_created == 1)
        await emu.advance(1)
        assert not pending.done()
        await emu.advance(1.5)
        status, body = await pending
        assert status == 200
        assert body["code"] == 200
        assert body["data"]["status"] == "completed"
        assert len(body["data"]["outputs"]) == 1
        rec = emu.task(body["data"]["id"])
        assert rec is not None
        assert rec.first_seen_finished_at is not None


async def test_sync_mode_times_out_to_processing_5004(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(sync_wait_s=5.0)
    async with emu:
        pending = asyncio.ensure_future(
            submit(session, emu, {"prompt": "slow [latency:60000]", "enable_sync_mode": True})
        )
        await until(lambda: emu.stats().tasks_created == 1)
        await emu.advance(5)
        status, body = await pending
        assert status == 200
        assert body["code"] == 5004
        assert body["data"]["status"] == "processing"
        assert body["data"]["code"] == 5004
        assert emu.stats().sync_timeouts == 1
        assert emu.stats().tasks_created == 1
        # Still running: a poll continues it.
        await emu.advance(60)
        assert (await result(session, emu, body["data"]["id"]))["status"] == "completed"


async def test_sync_mode_real_clock(session: aiohttp.ClientSession) -> None:
    async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:
        status, body = await submit(session, emu, {"prompt": "s", "enable_sync_mode": True})
        assert status == 200
        assert body["data"]["status"] == "completed"


async def test_balance_decreases_per_image(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(initial_balance=10.0)
    async with emu:
        status, body = await get(session, f"{emu.base_url}/api/v3/balance")
        assert status == 200
        assert body == {"code": 200, "message": "success", "data": {"balance": 10.0}}
        await submit(session, emu, {"prompt": "a", "num_images": 2})
        await submit(session, emu, {"prompt": "b"}, model=PRO)
        await submit(session, emu, {"prompt": "c [fail]"})
        await emu.advance(1)
        async with session.get(f"{emu.base_url}/api/v3/balance") as r:
            data = balance_decoder.decode(await r.read()).data
        assert data is not None
        assert data.balance == Decimal("10") - 2 * Decimal("0.025") - Decimal("0.04")


async def test_enforce_balance(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(initial_balance=0.0, enforce_balance=True)
    async with emu:
        status, body = await submit(session, emu, {"prompt": "a"})
        assert status == 403
        assert body["data"] is None


async def test_webhook_secret_endpoint(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(seed=1)
    async with emu:
        async with session.get(f"{emu.base_url}/api/v3/webhook/secret") as r:
            assert r.status == 200
            env = webhook_secret_decoder.decode(await r.read())
        assert env.data is not None
        assert env.data.secret.startswith("whsec_")
        assert env.data.secret == emu.webhook_secret


async def test_delete(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        ids = [(await submit(session, emu, {"prompt": f"d{i}"}))[1]["data"]["id"] for i in range(2)]
        await emu.advance(1)
        async with session.post(
            f"{emu.base_url}/api/v3/predictions/delete", json={"ids": [ids[0], "unknown"]}
        ) as r:
            assert r.status == 200
            assert set(await r.json()) == ENVELOPE_KEYS
        assert (await result(session, emu, ids[0]))["status"] == "deleted"
        assert (await result(session, emu, ids[1]))["status"] == "completed"
        async with session.get(f"{emu.base_url}/media/outputs/{ids[0]}/0.png") as r:
            assert r.status == 404
        async with session.post(
            f"{emu.base_url}/api/v3/predictions/delete", json={"ids": "x"}
        ) as r:
            assert r.status == 400


async def _upload(s: aiohttp.ClientSession, emu: Emulator, payload: bytes) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", payload, filename="my photo.png", content_type="image/png")
    async with s.post(f"{emu.base_url}/api/v3/media/upload/binary", data=form) as r:
        return r.status, await r.read()


async def test_upload_then_use_as_image(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        payload = b"\x89PNG fake bytes" * 100
        status, raw = await _upload(session, emu, payload)
        assert status == 200
        env = upload_decoder.decode(raw)
        assert env.data is not None
        assert env.data.size == len(payload)
        assert env.data.type == "image"
        assert env.data.filename == "my_photo.png"
        # Served without auth.
        async with aiohttp.ClientSession() as anonymous, anonymous.get(env.data.download_url) as r:
            assert r.status == 200
            assert await r.read() == payload
        status, body = await submit(
            session, emu, {"prompt": "edit", "image": env.data.download_url}
        )
        assert status == 200
        await emu.advance(1)
        assert (await result(session, emu, body["data"]["id"]))["status"] == "completed"
        assert emu.stats().uploads == 1
        assert emu.stats().media_requests_with_auth == 0


async def test_upload_too_large(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(max_upload_bytes=1000)
    async with emu:
        status, raw = await _upload(session, emu, b"x" * 2000)
        assert status == 413
        assert msgspec.json.decode(raw)["code"] == 413


async def test_upload_without_file_field(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        form = aiohttp.FormData()
        form.add_field("other", b"abc", filename="a.bin")
        async with session.post(f"{emu.base_url}/api/v3/media/upload/binary", data=form) as r:
            assert r.status == 400


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("{base}/media/uploads/0000000000000000/missing.png", "failed"),
        ("{base}/media/outputs/{zero}/0.png", "failed"),
        ("http://localhost:{port}/media/uploads/nope/x.png", "failed"),
        ("https://example.com/some/picture.jpg", "completed"),
    ],
)
async def test_unreachable_own_media_fails_1402(
    session: aiohttp.ClientSession, image: str, expected: str
) -> None:
    emu, _ = manual()
    async with emu:
        url = image.format(base=emu.base_url, zero="0" * 32, port=emu.port)
        _, body = await submit(session, emu, {"prompt": "edit", "image": url})
        await emu.advance(1)
        data = await result(session, emu, body["data"]["id"])
        assert data["status"] == expected
        if expected == "failed":
            assert data["code"] == 1402


async def test_media_with_auth_is_recorded(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        _, body = await submit(session, emu, {"prompt": "m"})
        await emu.advance(1)
        url = (await result(session, emu, body["data"]["id"]))["outputs"][0]
        async with session.get(url) as r:  # this session sends its key: a client bug
            assert r.status == 200
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as r:
            assert r.status == 200
        stats = emu.stats()
        assert stats.media_requests == 2
        assert stats.media_requests_with_auth == 1


async def test_duplicate_prompts_and_stats_over_http(session: aiohttp.ClientSession) -> None:
    emu, _ = manual()
    async with emu:
        await submit(session, emu, {"prompt": "twice"})
        await submit(session, emu, {"prompt": "twice"})
        _, body = await submit(session, emu, {"prompt": "once"})
        await result(session, emu, body["data"]["id"])
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{emu.base_url}/_emulator/stats") as r:
                assert r.status == 200
                stats = msgspec.json.decode(await r.read(), type=EmulatorStats)
            assert stats.submits_received == 3
            assert stats.tasks_created == 3
            assert stats.tasks_per_prompt == {"twice": 2, "once": 1}
            assert stats.duplicate_prompts == ["twice"]
            assert stats.polls_per_task == {body["data"]["id"]: 1}
            assert stats.requests_total == 4
            assert set(stats.tasks) == set(emu.stats().tasks)
            async with anonymous.post(f"{emu.base_url}/_emulator/reset") as r:
                assert r.status == 200
        after = emu.stats()
        assert after.submits_received == 0
        assert after.tasks_created == 0
        assert after.tasks == {}
        assert after.polls_per_task == {}
        assert after.duplicate_prompts == []


async def test_max_concurrent_requests(session: aiohttp.ClientSession) -> None:
    emu, _ = manual(stall_s=1.0)
    async with emu:
        emu.force_fault("stall_before", on="submit", times=5)
        pending = [
            asyncio.ensure_future(submit(session, emu, {"prompt": f"c{i}"})) for i in range(5)
        ]
        await until(lambda: emu.stats().max_concurrent_requests == 5)
        await emu.advance(1)
        results = await asyncio.gather(*pending)
        assert [status for status, _ in results] == [200] * 5
        assert emu.stats().max_concurrent_requests == 5


async def test_api_paths_are_not_models_and_odd_digits_are_not_server_errors() -> None:
    async with (
        Emulator(EmulatorConfig(seed=1, latency=LatencyProfile.fast())) as emu,
        aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as s,
    ):
        async with s.post(f"{emu.base_url}/api/v3/predictions/xyz", json={"prompt": "x"}) as r:
            assert r.status == 404
        async with s.post(
            f"{emu.base_url}/api/v3/someone/model", json={"prompt": "odd [fail:\u00b2]"}
        ) as r:
            assert r.status == 200
            task_id = (await r.json())["data"]["id"]
        async with s.get(f"{emu.base_url}/media/outputs/{task_id}/\u00b2.png") as r:
            assert r.status == 404
        assert emu.stats().tasks_created == 1


def test_the_configured_key_stays_out_of_the_config_repr() -> None:
    config = EmulatorConfig(api_key="sk-emulated-secret")
    assert "sk-emulated-secret" not in repr(config)
    assert "sk-emulated-secret" not in repr(Emulator(config, port=None))
