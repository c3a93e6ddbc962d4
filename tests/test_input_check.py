"""Every input checked against the model catalogue before it is billed, failing open loudly once.

In process against the emulator, whose catalogue lists a schema for every model it runs and
which, like the API, drops unknown keys silently and bills the task: each refusal here is
shown to send nothing (``stats().submits_received == 0``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import anyio
import msgspec
import pytest

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import (
    CatalogConfig,
    Client,
    FluxKontextDev,
    HTTPRequest,
    HTTPResponse,
    Model,
    RetryConfig,
    TypedRequest,
    UnknownFieldWarning,
    ValidationError,
)
from wavespeed_async._core.schema import compare_with_spec, compile_schema
from wavespeed_async._core.specs import MODEL_SPECS
from wavespeed_async._runtime.input_check import cache_dir_for
from wavespeed_async.emulator import (
    CATALOGUE,
    EmulatedModel,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
)

pytestmark = pytest.mark.anyio

DEV = "wavespeed-ai/flux-kontext-dev"
PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
VIDEO = "wavespeed-ai/wan-2.2/t2v-480p"
LORA = "wavespeed-ai/flux-dev-lora"
UPSCALER = "wavespeed-ai/image-upscaler"
OTHER = "acme/not-in-the-catalogue"

Answer = Callable[[HTTPRequest], Awaitable[HTTPResponse]]


class Spy:
    """The emulator's in-process transport, counting catalogue GETs.

    ``answer`` replaces the catalogue's answer (a failure, junk, a hang).
    """

    def __init__(self, emu: Emulator, answer: Answer | None = None) -> None:
        self.inner = emu.transport()
        self.answer = answer
        self.catalogue_gets = 0

    async def send(self, request: HTTPRequest, *, max_bytes: int) -> HTTPResponse:
        if request.url.endswith("/api/v3/models"):
            self.catalogue_gets += 1
            if self.answer is not None:
                return await self.answer(request)
        return await self.inner.send(request, max_bytes=max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def client_of(emu: Emulator, transport: Any = None, **options: Any) -> Client:
    return Client(
        CANARY_KEY,
        base_url=emu.base_url,
        transport=transport or emu.transport(),
        poll=fast_poll(),
        retry=options.pop("retry", fast_retry()),
        seed=1,
        **options,
    )


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    config = EmulatorConfig(seed=3, latency=LatencyProfile.fast())
    async with Emulator(config, port=None) as e:
        yield e


def sent_nothing(emu: Emulator) -> bool:
    stats = emu.stats()
    return stats.submits_received == 0 and stats.tasks_created == 0


# ---------------------------------------------------------------------------------------
# Each kind of violation: a clear error naming the model, the field and what is allowed,
# and no request sent.

VIOLATIONS = [
    pytest.param(
        LORA,
        {"prompt": "a fox", "guidence_scale": 3},
        "guidence_scale",
        ["not a field of wavespeed-ai/flux-dev-lora", "did you mean 'guidance_scale'?"],
        id="unknown-key-with-did-you-mean",
    ),
    pytest.param(
        PRO,
        {"prompt": "wide", "aspect_ration": "16:9"},
        "aspect_ration",
        [f"not a field of {PRO}", "did you mean 'aspect_ratio'?"],
        id="unknown-key-of-a-kontext-model",
    ),
    pytest.param(
        UPSCALER,
        {"target_resolution": "4k"},
        "image",
        [f"image: required by {UPSCALER}", "allowed: a string"],
        id="missing-required",
    ),
    pytest.param(
        LORA,
        {"prompt": "a fox", "num_images": "2"},
        "num_images",
        ["expected an integer", "write it as 2, a number"],
        id="wrong-type",
    ),
    pytest.param(
        DEV,
        {"prompt": "a fox", "num_inference_steps": 80},
        "num_inference_steps",
        [f"80 is above {DEV}'s maximum", "allowed: an integer 1 ~ 50"],
        id="out-of-range",
    ),
    pytest.param(
        DEV,
        {"prompt": "a fox", "size": "4000*4000"},
        "size",
        ['allowed: "W*H" with each dimension 512 ~ 1536'],
        id="size-out-of-range",
    ),
    pytest.param(
        VIDEO,
        {"prompt": "waves", "negative_prompt": "x" * 2001},
        "negative_prompt",
        ["2001 characters is longer than", "at most 2000 characters"],
        id="string-length",
    ),
    pytest.param(
        VIDEO,
        {"prompt": "waves", "duration": 6},
        "duration",
        ["allowed: one of 5, 8"],
        id="enum",
    ),
    pytest.param(
        LORA,
        {"prompt": "a fox", "loras": [{"path": f"a/{i}"} for i in range(4)]},
        "loras",
        ["4 items is more than", "at most 3 items"],
        id="array-length",
    ),
    pytest.param(
        LORA,
        {"prompt": "a fox", "loras": [{"path": "a/b", "scale": 1}, {"path": "c/d", "scale": 9}]},
        "loras[1].scale",
        ["loras[1].scale: 9 is above", "allowed: a number 0 ~ 4"],
        id="array-item-field",
    ),
    pytest.param(
        LORA,
        {"prompt": "a fox", "loras": [{"scale": 1}]},
        "loras[0].path",
        ["loras[0].path: required by an item of wavespeed-ai/flux-dev-lora's loras"],
        id="array-item-missing-required",
    ),
]


@pytest.mark.parametrize(("model", "inputs", "field", "says"), VIOLATIONS)
async def test_a_refused_input_names_model_field_and_allowed_and_sends_nothing(
    emu: Emulator, model: str, inputs: dict[str, Any], field: str, says: list[str]
) -> None:
    async with client_of(emu) as client:
        with pytest.raises(ValidationError) as caught:
            await client.run(model, inputs)
        assert sent_nothing(emu)
        # The same input through run_many: that job's result, the others go on.
        good = {"prompt": "fine"} if model != UPSCALER else {"image": "https://x.test/a.png"}
        async with client.run_many(model, [good, inputs, good]) as results:
            by_index = {r.index: r async for r in results}
    err = caught.value
    assert err.field == field
    assert model in str(err)
    for text in says:
        assert text in str(err)
    assert isinstance(by_index[1].error, ValidationError)
    assert by_index[1].id is None
    assert by_index[1].error.field == field
    assert by_index[0].ok and by_index[2].ok
    assert emu.stats().tasks_created == 2
    assert emu.stats().inputs_dropped == {}


async def test_without_the_check_the_api_drops_the_misspelt_key_and_bills(emu: Emulator) -> None:
    # What the check prevents: the emulator, like the API, runs and bills the typo.
    async with client_of(emu, catalog=CatalogConfig(check="off")) as client:
        pred = await client.run(LORA, {"prompt": "a fox", "guidence_scale": 3})
    assert pred.ok
    assert emu.stats().inputs_dropped == {"guidence_scale": 1}
    assert emu.stats().charged_usd == Decimal("0.02")


async def test_check_input_lists_every_problem_without_sending(emu: Emulator) -> None:
    async with client_of(emu) as client:
        found = await client.check_input(
            LORA, {"prompt": 3, "loras": [{"path": ""}], "num_imgs": 2, "seed": -5}
        )
        assert await client.check_input(LORA, {"prompt": "fine"}) == []
        assert [p.field for p in await client.check_input(LORA, None)] == ["input"]
    assert [p.field for p in found] == ["prompt", "loras[0].path", "num_imgs", "seed"]
    assert "did you mean 'num_images'?" in str(found[2])
    assert sent_nothing(emu)


class LoraRequest(TypedRequest, frozen=True, kw_only=True):
    """A typed request written by hand for a model the client has no spec for."""

    MODEL: ClassVar[str] = LORA
    prompt: str
    num_images: int = 1


async def test_typed_requests_are_checked_by_the_catalogue_too(emu: Emulator) -> None:
    async with client_of(emu) as client:
        with pytest.raises(ValidationError, match=r"num_images: 9 is above"):
            await client.submit(LoraRequest(prompt="a fox", num_images=9))
        assert sent_nothing(emu)
        pred = await client.run(LoraRequest(prompt="a fox", num_images=2))
        kontext = await client.run(FluxKontextDev(prompt="a fox"))
    assert pred.ok and len(pred.outputs) == 2
    assert kontext.ok


async def test_control_fields_and_sync_and_webhook_pass_the_check(emu: Emulator) -> None:
    async with client_of(emu) as client:
        pred = await client.run(VIDEO, {"prompt": "waves", "enable_base64_output": False})
        synced = await client.run(UPSCALER, {"image": "https://x.test/a.png"}, sync=True)
        with pytest.raises(ValidationError, match="enable_sync_mode: expected a boolean"):
            await client.submit(UPSCALER, {"image": "https://x.test/a.png", "enable_sync_mode": 1})
    assert pred.ok and synced.ok


# ---------------------------------------------------------------------------------------
# The catalogue: typed records, fetched once.


async def test_models_are_typed_records_in_catalogue_order_with_exact_prices(
    emu: Emulator,
) -> None:
    async with client_of(emu) as client:
        models = await client.models()
        videos = await client.models(type="text-to-video")
        lora = await client.model(LORA)
        missing = await client.model(OTHER)
    assert [m.id for m in models] == list(CATALOGUE)
    assert all(isinstance(m, Model) for m in models)
    assert [m.id for m in videos] == [VIDEO]
    assert missing is None
    assert lora is not None
    assert lora.base_price == Decimal("0.02")
    assert lora.type == "text-to-image"
    assert lora.field_order[:2] == ("prompt", "loras")
    assert lora.input_schema is not None and "loras" in lora.input_schema["properties"]


async def test_two_hundred_concurrent_first_submits_fetch_the_catalogue_once(
    emu: Emulator,
) -> None:
    spy = Spy(emu)
    async with client_of(emu, spy) as client:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(client.submit, LORA, {"prompt": f"fox {i}"})
        await client.models()
        await client.model(LORA)
        assert client._input_checks is not None
        assert client._input_checks.cache.fetches == 1
    assert spy.catalogue_gets == 1
    assert emu.stats().tasks_created == 200


async def test_a_batch_with_a_budget_fetches_the_catalogue_once_for_checks_and_prices(
    emu: Emulator,
) -> None:
    spy = Spy(emu)
    inputs = [{"prompt": f"fox {i}", "loras": [{"path": "a/b", "scale": 1}]} for i in range(20)]
    async with client_of(emu, spy) as client:
        async with client.run_many(LORA, inputs, budget_usd=Decimal("1")) as run:
            results = [r async for r in run]
        quote = await client.quote(LORA, inputs[0])
    assert all(r.ok for r in results) and len(results) == 20
    assert quote.cost_usd > 0
    assert spy.catalogue_gets == 1


async def test_the_hand_written_kontext_specs_agree_with_the_emulators_catalogue(
    emu: Emulator,
) -> None:
    async with client_of(emu) as client:
        models = {m.id: m for m in await client.models()}
    for model_id, spec in MODEL_SPECS.items():
        checker = compile_schema(model_id, models[model_id].input_schema)
        assert checker.exact, checker.reason
        assert compare_with_spec(checker, spec) == [], model_id


# ---------------------------------------------------------------------------------------
# Fail open, loudly once.


def catalogue_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wavespeed_async" and r.levelno == logging.WARNING
    ]


async def test_a_model_outside_the_catalogue_goes_out_unchecked_with_one_warning(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async")
    async with client_of(emu) as client:
        first = await client.run(OTHER, {"prompt": "anything", "whatever": 1})
        second = await client.run(OTHER, {"prompt": "again"})
    assert first.ok and second.ok
    [message] = catalogue_warnings(caplog)
    assert message.startswith(f"inputs of {OTHER} are sent unchecked: ")
    assert "the model catalogue does not list it" in message
    assert "check='strict'" in message


async def test_strict_refuses_a_model_outside_the_catalogue(emu: Emulator) -> None:
    async with client_of(emu, catalog=CatalogConfig(check="strict")) as client:
        with pytest.raises(ValidationError) as caught:
            await client.run(OTHER, {"prompt": "anything"})
        assert sent_nothing(emu)
        assert (await client.run(LORA, {"prompt": "listed"})).ok
    assert caught.value.field == "model"
    assert f"{OTHER} not sent: the model catalogue does not list it" in str(caught.value)
    assert "check='strict'" in str(caught.value)


async def answer_500(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse(500, {}, b'{"code": 500, "message": "down", "data": null}')


async def answer_junk(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse(200, {}, b"<html>maintenance</html>")


async def answer_not_a_catalogue(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse(200, {}, b'{"code": 200, "message": "ok", "data": {"models": 3}}')


async def answer_never(request: HTTPRequest) -> HTTPResponse:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (answer_500, "ServerError"),
        (answer_junk, "DecodeError"),
        (answer_not_a_catalogue, "not a list of models"),
        (answer_never, "CatalogConfig.fetch_timeout_s"),
    ],
    ids=["5xx", "junk", "not-a-catalogue", "timeout"],
)
async def test_an_unreachable_catalogue_lets_inputs_through_with_one_warning(
    emu: Emulator, caplog: pytest.LogCaptureFixture, answer: Answer, says: str
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async")
    spy = Spy(emu, answer)
    config = CatalogConfig(fetch_timeout_s=0.2)
    retry = RetryConfig(max_attempts=2, backoff_base_s=0.001, max_backoff_s=0.01)
    async with client_of(emu, spy, catalog=config, retry=retry) as client:
        for i in range(5):
            # A misspelt key goes out too: nothing can say it is one.
            assert (await client.run(LORA, {"prompt": f"fox {i}", "guidence_scale": 3})).ok
    assert emu.stats().tasks_created == 5
    assert spy.catalogue_gets <= 2  # one fetch (and its retry), not one per submit
    [message] = [m for m in catalogue_warnings(caplog) if m.startswith("inputs of")]
    assert message.startswith(f"inputs of {LORA} are sent unchecked: the model catalogue could")
    assert says in message
    assert CANARY_KEY not in caplog.text


async def test_a_failed_catalogue_is_fetched_again_after_retry_after(emu: Emulator) -> None:
    spy = Spy(emu, answer_500)
    config = CatalogConfig(retry_after_s=0)
    async with client_of(emu, spy, catalog=config, retry=RetryConfig(max_attempts=1)) as client:
        await client.run(LORA, {"prompt": "one"})
        assert spy.catalogue_gets == 1
        spy.answer = None  # the catalogue is back
        with pytest.raises(ValidationError, match="did you mean 'guidance_scale'"):
            await client.run(LORA, {"prompt": "two", "guidence_scale": 3})
    assert spy.catalogue_gets == 2


async def test_with_the_catalogue_down_kontext_inputs_fall_back_to_the_built_in_spec(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async")
    spy = Spy(emu, answer_500)
    strict = CatalogConfig(check="strict")
    async with client_of(emu, spy, catalog=strict, retry=RetryConfig(max_attempts=1)) as client:
        with pytest.raises(ValidationError, match="num_inference_steps: 80 is above the maximum"):
            await client.run(DEV, {"prompt": "a fox", "num_inference_steps": 80})
        with pytest.warns(UnknownFieldWarning, match="did you mean 'aspect_ratio'"):
            assert (await client.run(PRO, {"prompt": "wide", "aspect_ration": "16:9"})).ok
        with pytest.raises(ValidationError) as caught:  # strict: no spec, no catalogue
            await client.run(LORA, {"prompt": "a fox"})
    assert caught.value.field == "model"
    assert "could not be fetched" in str(caught.value)
    assert emu.stats().tasks_created == 1
    warned = catalogue_warnings(caplog)
    assert f"inputs of {DEV} are checked against the client's built-in spec" in warned[0]


async def test_a_schema_partly_understood_is_checked_where_it_can_be_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "wavespeed_async")
    odd = EmulatedModel(
        model_id="acme/odd",
        name="Odd",
        description="A schema with a keyword the checker does not evaluate.",
        type="text-to-image",
        unit_price=Decimal("0.01"),
        request_schema={
            "type": "object",
            "properties": {
                "prompt": {"type": "string"},
                "steps": {"type": "integer", "maximum": 10, "multipleOf": 2},
            },
            "required": ["prompt"],
        },
    )
    config = EmulatorConfig(latency=LatencyProfile.fast(), models=(odd,))
    async with Emulator(config, port=None) as emu, client_of(emu) as client:
        with pytest.raises(ValidationError, match="steps: 12 is above"):
            await client.submit("acme/odd", {"prompt": "x", "steps": 12})
        assert (await client.run("acme/odd", {"prompt": "x", "steps": 4})).ok
        assert (await client.run("acme/odd", {"prompt": "y"})).ok
    [message] = catalogue_warnings(caplog)
    assert message.startswith("inputs of acme/odd are checked only in part: ")
    assert "multipleOf is not checked" in message


async def test_check_off_fetches_no_catalogue(emu: Emulator) -> None:
    spy = Spy(emu)
    async with client_of(emu, spy, catalog=CatalogConfig(check="off")) as client:
        assert (await client.run(LORA, {"prompt": "x", "loras": [{"path": "a/b"}]})).ok
        with pytest.raises(ValidationError):  # the built-in spec still checks Kontext
            await client.run(DEV, {"prompt": "x", "num_images": 9})
    assert spy.catalogue_gets == 0


# ---------------------------------------------------------------------------------------
# The cache on disk, and the settings.


async def test_a_second_client_reads_the_catalogue_file_without_fetching(
    emu: Emulator, tmp_path: Path
) -> None:
    config = CatalogConfig(cache_dir=tmp_path)
    first, second = Spy(emu), Spy(emu)
    async with client_of(emu, first, catalog=config) as client:
        await client.run(LORA, {"prompt": "x"})
    files = list(tmp_path.glob("catalog-*.json"))
    assert len(files) == 1
    assert b"http" not in files[0].read_bytes().split(b'"body"')[0]  # no URL in the header
    async with client_of(emu, second, catalog=config) as client:
        with pytest.raises(ValidationError, match="did you mean 'guidance_scale'"):
            await client.run(LORA, {"prompt": "x", "guidence_scale": 2})
    assert (first.catalogue_gets, second.catalogue_gets) == (1, 0)


def test_the_catalogue_file_is_kept_for_public_hosts_only_unless_a_folder_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = CatalogConfig()
    default = cache_dir_for(config, "https://api.wavespeed.ai")
    client = Client("k", base_url="https://api.wavespeed.ai")
    assert client.catalog == config
    for local in ("http://127.0.0.1:8080", "http://localhost:1", "http://emulator.invalid"):
        assert cache_dir_for(config, local) is None
        assert cache_dir_for(CatalogConfig(cache_dir=tmp_path), local) == tmp_path
    assert cache_dir_for(CatalogConfig(disk_cache=False), "https://api.wavespeed.ai") is None
    from wavespeed_async._runtime.catalog_cache import CatalogCache

    cache = CatalogCache(_never_called, base_url="https://api.wavespeed.ai", cache_dir=default)
    assert cache.path is not None and cache.path.parent == tmp_path / "wavespeed-async"


async def _never_called() -> bytes:
    raise AssertionError("not fetched")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"check": "maybe"}, "check"),
        ({"ttl_s": -1}, "ttl_s"),
        ({"fetch_timeout_s": 0}, "fetch_timeout_s"),
        ({"retry_after_s": float("nan")}, "retry_after_s"),
        ({"cache_dir": 3}, "cache_dir"),
        ({"disk_cache": "no"}, "disk_cache"),
    ],
)
def test_catalog_settings_out_of_range_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CatalogConfig(**options)
    assert caught.value.field == field
    assert "allowed" in str(caught.value)


def test_a_client_refuses_a_catalog_setting_of_the_wrong_kind() -> None:
    with pytest.raises(ValidationError, match="catalog: a CatalogConfig, not str"):
        Client("k", catalog="strict")  # type: ignore[arg-type]


def test_model_records_are_frozen_and_encode_to_json() -> None:
    model = Model(id="a/b", base_price=Decimal("0.03"))
    with pytest.raises(AttributeError):
        model.id = "c/d"  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(model))["base_price"] == "0.03"
