"""Whether a collected task is the job of its journal line.

By model, and by prompt when the server echoes the inputs.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from wavespeed_async import Prediction
from wavespeed_async._core.models import prediction_decoder
from wavespeed_async.cli._collect import foreign_task
from wavespeed_async.cli._jobs import Job, parse_jobs

PRO = "wavespeed-ai/flux-kontext-pro/text-to-image"
DEV = "wavespeed-ai/flux-kontext-dev"


def job(prompt: str = "a lighthouse", model: str = PRO) -> Job:
    line = msgspec.json.encode({"model": model, "prompt": prompt}).decode()
    [parsed] = parse_jobs(line, default_model=None, base=Path())
    return parsed


@pytest.mark.parametrize(
    ("pred", "why"),
    [
        (Prediction(id="t1", model=PRO), None),
        (Prediction(id="t1"), None),  # no model named: nothing to compare
        (Prediction(id="t1", model="flux-kontext-pro/text-to-image"), None),  # owner left out
        (Prediction(id="t1", model=PRO.upper()), None),
        (Prediction(id="t1", model=DEV), f"answers with model '{DEV}'"),
        (Prediction(id="t1", model=PRO, input={"prompt": "a lighthouse"}), None),
        (Prediction(id="t1", model=PRO, input={"prompt": "a fox"}), "another prompt ('a fox')"),
        (Prediction(id="t1", model=PRO, input="not a dict"), None),
    ],
)
def test_a_collected_task_is_checked_against_its_line(pred: Prediction, why: str | None) -> None:
    found = foreign_task(job(), pred)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found and "t1" in found


def test_a_server_echo_of_the_inputs_is_decoded_whatever_its_shape() -> None:
    for echoed, expected in (
        (b'{"prompt":"a fox","seed":3}', {"prompt": "a fox", "seed": 3}),
        (b'"text"', "text"),
        (b"null", None),
    ):
        body = b'{"code":200,"message":"ok","data":{"id":"t1","input":' + echoed + b"}}"
        env = prediction_decoder.decode(body)
        assert env.data is not None and env.data.input == expected
