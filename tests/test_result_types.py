"""What a user's type checker and traceback see: narrowing results, public class names."""

from __future__ import annotations

import pickle
import re
import textwrap
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytest

import wavespeed_async
from wavespeed_async import (
    BulkFailed,
    BulkOk,
    BulkResult,
    Client,
    FluxKontextDev,
    LedgerError,
    Prediction,
    TaskFailedError,
    ValidationError,
)

DEV = "wavespeed-ai/flux-kontext-dev"


@pytest.mark.anyio
async def test_ok_narrows_a_result_to_one_with_a_prediction(client: Client, tmp_path: Path) -> None:
    inputs = [{"prompt": "a fox"}, {"prompt": "[fail:1200] no"}]
    saved: list[Path] = []
    failures: list[str] = []
    async with client.run_many(DEV, inputs) as results:
        async for r in results:
            assert isinstance(r, BulkResult)
            if r.ok:
                # Type-checked with the rest of the tests (mypy --strict): r.prediction is
                # a Prediction here, and r.id a str.
                saved += await client.download(r.prediction, tmp_path, stem=r.id)
                assert isinstance(r, BulkOk)
            else:
                failures.append(type(r.error).__name__)
                assert isinstance(r, BulkFailed)
    assert len(saved) == 1 and saved[0].exists()
    assert failures == ["TaskFailedError"]


def test_a_hand_made_result_still_builds_and_says_whether_it_is_ok() -> None:
    pred = Prediction(id="t1", status="completed", outputs=["https://x/y.png"])
    made: BulkResult[Any] = BulkResult(0, {"prompt": "p"}, "t1", pred, None)
    assert made.ok and made.outputs == ["https://x/y.png"]
    assert BulkOk(0, None, "t1", pred, None) == BulkOk(0, None, "t1", pred, None)
    assert repr(BulkOk(0, None, "t1", pred, None)).startswith("BulkOk(index=0")


@pytest.mark.e2e
def test_mypy_strict_accepts_download_of_r_prediction_after_r_ok(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    user = tmp_path / "user_code.py"
    user.write_text(
        textwrap.dedent(
            """
            from wavespeed_async import Client

            async def main(client: Client) -> None:
                async with client.run_many("m/x", [{"prompt": "a"}]) as results:
                    async for r in results:
                        if r.ok:
                            await client.download(r.prediction, "out/")
                            reveal_type(r.id)
                        else:
                            reveal_type(r.error)
            """
        )
    )
    out, errors, status = api.run(["--strict", "--no-incremental", "--config-file", "", str(user)])
    assert status == 0, out + errors
    assert re.search(r'Revealed type is "(builtins\.)?str"', out), out
    assert 'Revealed type is "wavespeed_async._core.errors.WaveSpeedError"' in out


@pytest.mark.anyio
async def test_a_typed_request_after_a_model_path_says_pass_it_alone(client: Client) -> None:
    request = FluxKontextDev(prompt="x", image="https://example.com/a.png")
    with pytest.raises(ValidationError, match="pass a typed request alone") as info:
        await client.run(DEV, request)  # type: ignore[arg-type]
    assert info.value.field == "input" and "FluxKontextDev" in str(info.value)


def test_tracebacks_name_the_public_classes() -> None:
    pred = Prediction(id="t1", status="failed", error="bad", code=1200)
    shown = "".join(traceback.format_exception_only(TaskFailedError(pred)))
    assert shown.startswith("wavespeed_async.TaskFailedError: task t1 ended failed")
    assert repr(Client) == "<class 'wavespeed_async.Client'>"
    for name in wavespeed_async.__all__:
        obj = getattr(wavespeed_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj.__module__ == "wavespeed_async", name
    # Found again under that name: Ray and multiprocessing pickle errors.
    again = pickle.loads(pickle.dumps(LedgerError("gone", location="l/")))  # noqa: S301
    assert type(again) is LedgerError


def test_the_missing_key_message_says_to_point_the_base_url_at_the_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(ValidationError) as info:
        Client()
    text = str(info.value)
    assert "WAVESPEED_API_KEY" in text and "WAVESPEED_BASE_URL" in text and "emulator" in text


@pytest.mark.anyio
async def test_progress_has_an_eta_only_when_the_inputs_have_a_length(client: Client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generated = ({"prompt": f"p{i}"} for i in range(3))
        async with client.run_many(DEV, generated) as results:
            async for _ in results:
                assert results.progress.total is None and results.progress.eta_s is None
        listed = [{"prompt": f"p{i}"} for i in range(3)]
        async with client.run_many(DEV, listed) as results:
            async for _ in results:
                assert results.progress.total == 3
        assert "ETA" not in str(results.progress)  # all done: nothing left to estimate
