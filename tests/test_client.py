"""The Client against the in-process emulator: every method, every error type."""

from __future__ import annotations

import base64
import io
import logging
import struct
from pathlib import Path
from typing import Any

import anyio
import pytest
from yarl import URL

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from tests.services import serve_aiohttp
from wavespeed_async import (
    AiohttpTransport,
    AuthenticationError,
    BadRequestError,
    Client,
    ClientClosedError,
    ConnectError,
    FluxKontextDev,
    FluxKontextProTextToImage,
    NotFoundError,
    Prediction,
    TaskFailedError,
    TaskTimeoutError,
    Timeouts,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_run_returns_a_completed_typed_prediction(client: Client, emulator: Emulator) -> None:
    pred = await client.run(PRO, {"prompt": "a lighthouse at dusk", "num_images": 2})
    assert isinstance(pred, Prediction)
    assert pred.status == "completed" and pred.ok and pred.done
    assert len(pred.outputs) == 2
    assert all(o.startswith(emulator.base_url) for o in pred.outputs)
    assert pred.inference_ms is not None and pred.inference_ms >= 0
    assert len(pred.id) == 32
    assert emulator.stats().tasks_created == 1


async def test_typed_request_carries_its_model(client: Client, emulator: Emulator) -> None:
    pred = await client.run(FluxKontextProTextToImage(prompt="typed", aspect_ratio="16:9"))
    assert pred.model == PRO
    assert emulator.stats().tasks[pred.id].model == PRO


async def test_submit_then_get_result_then_wait(client: Client) -> None:
    created = await client.submit(PRO, {"prompt": "step by step"})
    assert created.status in ("created", "processing")
    current = await client.get_result(created.id)
    assert current.id == created.id
    done = await client.wait(created.id)
    assert done.ok


async def test_bad_input_is_refused_before_any_request(client: Client, emulator: Emulator) -> None:
    with pytest.raises(ValidationError) as info:
        await client.run(DEV, {"prompt": "x", "num_inference_steps": 51})
    assert info.value.field == "num_inference_steps"
    assert "1 ~ 50" in str(info.value)
    with pytest.raises(ValidationError) as info2:
        FluxKontextDev(prompt="x", size="4096*4096")
    assert info2.value.field == "size"
    assert emulator.stats().submits_received == 0


async def test_unknown_models_pass_plain_dicts_through(client: Client) -> None:
    pred = await client.run("someone/some-new-model", {"prompt": "hello", "whatever": 3})
    assert pred.ok


async def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="WAVESPEED_API_KEY"):
        Client()


async def test_key_and_base_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", "from-env")
    monkeypatch.setenv("WAVESPEED_BASE_URL", emulator.base_url)
    async with Client(poll=fast_poll()) as c:
        assert c.base_url == emulator.base_url
        assert (await c.run(PRO, {"prompt": "env"})).ok


async def test_wrong_key_raises_authentication_error() -> None:
    config = EmulatorConfig(seed=1, latency=LatencyProfile.fast(), api_key="right-key")
    async with Emulator(config) as emu, Client("wrong-key", base_url=emu.base_url) as c:
        with pytest.raises(AuthenticationError) as info:
            await c.balance()
        assert info.value.status == 401


async def test_failed_task_raises_with_id_and_code(client: Client) -> None:
    with pytest.raises(TaskFailedError) as info:
        await client.run(PRO, {"prompt": "please [fail:1200]"})
    err = info.value
    assert err.task_id is not None and len(err.task_id) == 32
    assert err.code == 1200
    assert err.status == "failed"
    assert not err.retryable
    assert err.task_id in str(err)


async def test_deadline_raises_timeout_error_carrying_the_task_id(client: Client) -> None:
    with pytest.raises(TaskTimeoutError) as info:
        await client.run(PRO, {"prompt": "slow [latency:60000]"}, timeout=0.2)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.task_id is not None
    # The task still exists: its id is usable afterwards.
    assert (await client.get_result(err.task_id)).status in ("created", "processing")


async def test_unknown_task_id_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.get_result("0" * 32)
    assert info.value.status == 404
    assert info.value.task_id == "0" * 32


async def test_upload_then_edit_with_it(client: Client, emulator: Emulator, tmp_path: Path) -> None:
    src = tmp_path / "car.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    url = await client.upload(src)
    assert url.startswith(emulator.base_url)
    url2 = await client.upload(io.BytesIO(b"raw bytes"), filename="b.bin")
    assert url2 != url
    pred = await client.run(FluxKontextDev(prompt="make it red", image=url, size="640*512"))
    assert pred.ok


async def test_missing_upload_fails_the_task_with_1402(client: Client, emulator: Emulator) -> None:
    image = f"{emulator.base_url}/media/uploads/nope/missing.png"
    with pytest.raises(TaskFailedError) as info:
        await client.run(DEV, {"prompt": "edit", "image": image})
    assert info.value.code == 1402


async def test_download_streams_pngs_without_the_key(
    client: Client, emulator: Emulator, tmp_path: Path
) -> None:
    pred = await client.run(DEV, {"prompt": "save me", "size": "512*768", "num_images": 2})
    paths = await client.download(pred, tmp_path / "out")
    assert [p.name for p in paths] == [f"{pred.id}_0.png", f"{pred.id}_1.png"]
    for p in paths:
        assert png_size(p.read_bytes()) == (512, 768)
    assert emulator.stats().media_requests_with_auth == 0
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


async def test_download_decodes_base64_outputs(client: Client, tmp_path: Path) -> None:
    pred = await client.run(DEV, {"prompt": "inline", "enable_base64_output": True})
    assert not pred.outputs[0].startswith("http")
    base64.b64decode(pred.outputs[0], validate=True)
    [path] = await client.download(pred, tmp_path)
    assert path.suffix == ".png"
    assert png_size(path.read_bytes()) == (1024, 1024)


async def test_balance_decreases_and_delete_marks_tasks(client: Client) -> None:
    before = await client.balance()
    pred = await client.run(PRO, {"prompt": "costs money"})
    assert await client.balance() < before
    await client.delete([pred.id])
    assert (await client.get_result(pred.id)).status == "deleted"
    with pytest.raises(TaskFailedError):
        await client.wait(pred.id)


async def test_webhook_with_base64_is_refused_locally(client: Client, emulator: Emulator) -> None:
    with pytest.raises(ValidationError) as info:
        await client.submit(
            DEV,
            {"prompt": "x", "enable_base64_output": True},
            webhook="http://127.0.0.1:9/hook",
        )
    assert info.value.field == "webhook"
    assert emulator.stats().submits_received == 0


async def test_webhook_secret_is_fetched(client: Client) -> None:
    assert (await client.webhook_secret()).startswith("whsec_")


async def test_connect_failure_is_a_connect_error() -> None:
    # Bind a port, then close it: nothing listens there.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with Client(CANARY_KEY, base_url=f"http://127.0.0.1:{port}", retry=fast_retry()) as c:
        with pytest.raises(ConnectError):
            await c.submit(PRO, {"prompt": "nobody home"})
        with pytest.raises(ConnectError):
            await c.balance()


async def test_closed_client_raises_a_clear_error(emulator: Emulator) -> None:
    c = Client(CANARY_KEY, base_url=emulator.base_url)
    await c.aclose()
    with pytest.raises(ClientClosedError, match="closed"):
        await c.balance()
    assert c.closed


def test_client_used_from_another_event_loop_raises_a_clear_error() -> None:
    async def main() -> None:
        async with Emulator(EmulatorConfig(seed=1, latency=LatencyProfile.fast())) as emu:
            c = Client(CANARY_KEY, base_url=emu.base_url)
            await c.balance()

            def other_loop() -> None:
                async def use() -> None:
                    await c.balance()

                anyio.run(use)

            with pytest.raises(ClientClosedError, match="another event loop"):
                await anyio.to_thread.run_sync(other_loop)
            await c.aclose()

    anyio.run(main)


async def test_client_can_be_used_without_async_with(emulator: Emulator) -> None:
    c = Client(CANARY_KEY, base_url=emulator.base_url, poll=fast_poll())
    try:
        assert (await c.run(PRO, {"prompt": "no context manager"})).ok
    finally:
        await c.aclose()


async def test_on_task_created_sees_the_id_before_the_result(emulator: Emulator) -> None:
    seen: list[str] = []

    async def hook(p: Prediction) -> None:
        seen.append(p.id)
        assert emulator.stats().tasks[p.id].first_seen_finished_at is None

    async with Client(
        CANARY_KEY, base_url=emulator.base_url, poll=fast_poll(), on_task_created=hook
    ) as c:
        pred = await c.run(PRO, {"prompt": "hooked"})
    assert seen == [pred.id]


async def test_the_key_never_leaks_into_reprs_logs_or_errors(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    emulator.force_fault("reset_after", on="submit", times=1)
    emulator.force_fault("server_error_before", on="poll", times=2)
    async with Client(
        CANARY_KEY, base_url=emulator.base_url, poll=fast_poll(), retry=fast_retry()
    ) as c:
        texts = [repr(c), str(c)]
        for call in (
            c.run(PRO, {"prompt": "lost answer"}),
            c.run(PRO, {"prompt": "boom [fail]"}),
            c.get_result("f" * 32),
            c.run(DEV, {"prompt": "x", "guidance_scale": 99.0}),
        ):
            try:
                await call
            except WaveSpeedError as exc:
                errors.append(exc)
        pred = await c.run(PRO, {"prompt": "fine"})
        await c.download(pred, tmp_path)
        texts.append(repr(c))
    assert len(errors) == 4
    for err in errors:
        texts += [str(err), repr(err), repr(vars(err))]
        if err.__cause__ is not None:
            texts += [str(err.__cause__), repr(err.__cause__)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(p) for p in tmp_path.rglob("*")]
    assert caplog.records, "expected some log lines to check"
    leaked = [t for t in texts if CANARY_KEY in t]
    assert leaked == []


async def test_api_status_errors_are_typed(client: Client, emulator: Emulator) -> None:
    with pytest.raises(BadRequestError) as info:
        # Skip local validation by using an unknown model whose server check fails.
        await client.submit("someone/other-model", {"no_prompt": True})
    assert info.value.status == 400
    assert "prompt" in str(info.value)


async def test_request_timeout_is_configurable() -> None:
    t = Timeouts(connect_s=1.0, request_s=2.0, task_s=None)
    assert t.task_s is None
    with pytest.raises(ValidationError):
        Timeouts(request_s=-1.0)


async def test_a_webhook_delivery_ends_the_wait_without_polling(emulator: Emulator) -> None:
    from aiohttp import web

    from wavespeed_async import PollConfig, verify_webhook

    async with Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=PollConfig(expected_duration_s=0.03, webhook_fallback_s=30.0),
    ) as c:
        secret = await c.webhook_secret()
        delivered: list[bool] = []

        async def hook(request: web.Request) -> web.Response:
            pred = verify_webhook(secret, dict(request.headers), await request.read())
            delivered.append(c.deliver(pred))
            c.deliver(pred)  # a duplicate is harmless
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        async with serve_aiohttp(app) as base_url:
            with anyio.fail_after(10):
                hook_url = f"{base_url}/hook"
                pred = await c.run(PRO, {"prompt": "pushed [latency:50]"}, webhook=hook_url)
    assert pred.ok
    assert delivered == [True]
    assert emulator.stats().polls_per_task.get(pred.id, 0) == 0


async def test_a_delivery_before_the_wait_is_remembered(client: Client, emulator: Emulator) -> None:
    created = await client.submit(PRO, {"prompt": "early"})
    done = await client.wait(created.id)
    polls = emulator.stats().polls_per_task[done.id]
    # Replay the final state as if a webhook came before a second wait started.
    assert client.deliver(done) is False
    again = await client.wait(done.id)
    assert again == done
    assert emulator.stats().polls_per_task[done.id] == polls  # answered without a poll
    assert client.deliver(created) is False  # not terminal: ignored


async def test_download_names_files_by_the_given_stem(client: Client, tmp_path: Path) -> None:
    pred = await client.run(PRO, {"prompt": "named", "num_images": 2})
    paths = await client.download(pred, tmp_path, stem=f"line00007_{pred.id}")
    assert [p.name for p in paths] == [f"line00007_{pred.id}_0.png", f"line00007_{pred.id}_1.png"]


async def test_a_wait_parses_its_result_url_once_for_all_its_polls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp parses a str URL at every request, through a cache of 128 URLs that misses
    # once more tasks than that are polled in turn: each wait hands it one parsed URL.
    # Tasks of 0.26-1.4 s, polled at most 50 ms apart: several polls each, however late
    # a loaded machine starts the waits.
    config = EmulatorConfig(seed=7, latency=LatencyProfile.realistic().scaled(0.2))
    async with (
        Emulator(config) as emu,
        Client(CANARY_KEY, base_url=emu.base_url, poll=fast_poll(), retry=fast_retry()) as client,
    ):
        transport = client._open().transport
        assert isinstance(transport, AiohttpTransport)
        session = transport._session or transport._open()
        polled: list[object] = []
        request = session.request

        def spy(method: str, url: Any, **kwargs: Any) -> Any:
            if method == "GET" and "/predictions/" in str(url):  # not the catalogue's GET
                polled.append(url)
            return request(method, url, **kwargs)

        monkeypatch.setattr(session, "request", spy)
        preds = [await client.submit(PRO, {"prompt": f"parsed once {i}"}) for i in range(3)]
        async with anyio.create_task_group() as tg:
            for pred in preds:
                tg.start_soon(client.wait, pred)
    assert len(polled) > len(preds)  # some task was polled more than once
    urls: dict[str, set[int]] = {}
    for url in polled:
        assert isinstance(url, URL)
        urls.setdefault(url.path, set()).add(id(url))
    assert sorted(urls) == sorted(f"/api/v3/predictions/{p.id}/result" for p in preds)
    assert all(len(objects) == 1 for objects in urls.values())


async def test_settings_are_fixed_when_the_client_is_built(emulator: Emulator) -> None:
    """A Client takes its settings when it is built; assigning to them is refused.

    An assignment, which would take effect in some places and not in others, is refused
    before and after the Client opens.
    """
    from wavespeed_async import FlowLimits, RetryConfig, SizeLimits

    client = Client(
        CANARY_KEY,
        base_url=emulator.base_url,
        poll=fast_poll(),
        timeouts=Timeouts(request_s=7.0),
        retry=fast_retry(),
        limits=FlowLimits(max_in_flight=3),
        sizes=SizeLimits(max_answer_bytes=1 << 20),
    )
    for name, value in [
        ("timeouts", Timeouts()),
        ("retry", RetryConfig()),
        ("limits", FlowLimits()),
        ("sizes", SizeLimits()),
        ("poll", fast_poll()),
    ]:
        with pytest.raises(AttributeError):
            setattr(client, name, value)
    with pytest.raises(ValidationError, match="retry: a RetryConfig, not dict"):
        Client(CANARY_KEY, base_url=emulator.base_url, retry={"max_attempts": 2})  # type: ignore[arg-type]
    async with client:
        assert (await client.run(PRO, {"prompt": "p"})).ok
        assert client.timeouts.request_s == 7.0 and client.limits.max_in_flight == 3
        assert client.retry.max_attempts == fast_retry().max_attempts
        with pytest.raises(AttributeError):
            client.timeouts = Timeouts()  # type: ignore[misc]
        assert client.timeouts.request_s == 7.0  # unchanged
