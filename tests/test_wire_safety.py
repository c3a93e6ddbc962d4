"""Pure checks of the wire-safety helpers: task ids, printable text, size limits, models."""

from __future__ import annotations

import logging

import msgspec
import pytest

from wavespeed_async import Prediction, SizeLimits, ValidationError
from wavespeed_async._core.ids import MAX_TASK_ID_LENGTH, check_task_id, is_task_id
from wavespeed_async._core.models import prediction_decoder
from wavespeed_async._core.text import printable
from wavespeed_async._http.media import is_private_host


@pytest.mark.parametrize(
    "good", ["0123456789abcdef0123456789abcdef", "550e8400-e29b-41d4-a716-446655440000", "a_b"]
)
def test_api_shaped_ids_are_task_ids(good: str) -> None:
    assert is_task_id(good) and check_task_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "..", "../x", "/abs", "a b", "a\x00", "a\n", "é", "a" * (MAX_TASK_ID_LENGTH + 1)]
)
def test_other_ids_are_refused_naming_the_field(bad: str) -> None:
    assert not is_task_id(bad)
    with pytest.raises(ValidationError) as info:
        check_task_id(bad, "task_ids[3]")
    assert info.value.field == "task_ids[3]" and "A-Z a-z 0-9 _ -" in str(info.value)


def test_printable_strips_control_and_format_characters_and_cuts() -> None:
    assert printable("ok text") == "ok text"
    assert printable("\x1b[2Jred\x00\r\n\u202egnp.exe\tend") == "[2Jredgnp.exeend"
    assert printable("x" * 10, limit=5) == "xxxx\u2026"


@pytest.mark.parametrize(
    ("host", "private"),
    [("127.0.0.1", True), ("localhost", True), ("169.254.169.254", True), ("[::1]", True),
     ("fe80::1%eth0", True), ("100.64.0.1", True), ("api.wavespeed.ai", False),
     ("8.8.8.8", False), ("2001:4860:4860::8888", False)],
)  # fmt: skip
def test_private_hosts(host: str, private: bool) -> None:
    assert is_private_host(host) is private


def test_size_limits_are_checked() -> None:
    assert SizeLimits().max_answer_bytes == 8 << 20
    assert SizeLimits().max_download_bytes == 64 << 20
    with pytest.raises(ValidationError) as info:
        SizeLimits(max_answer_bytes=10)
    assert info.value.field == "max_answer_bytes"


def test_optional_nulls_and_unknown_status_decode(caplog: pytest.LogCaptureFixture) -> None:
    body = (
        b'{"code":200,"data":{"id":"abc","status":"queued_somewhere_new","error":null,'
        b'"has_nsfw_contents":[null,true],"timings":null,"urls":null,"new":{"a":[1]}}}'
    )
    with caplog.at_level(logging.WARNING, logger="wavespeed_async"):
        for _ in range(3):
            pred = prediction_decoder.decode(body).data
    assert pred is not None and pred.error == "" and not pred.done
    assert pred.has_nsfw_contents == [None, True]
    assert [r.getMessage() for r in caplog.records].count(
        "unknown task status 'queued_somewhere_new': treated as not finished (polling goes on)"
    ) == 1


@pytest.mark.parametrize(
    "data",
    [b'{"id":"../x"}', b'{"id":"a","status":null}', b'{"id":"a","outputs":"http://x"}'],
)
def test_wrong_values_where_they_mislead_do_not_decode(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        prediction_decoder.decode(b'{"data":' + data + b"}")


def test_a_prediction_built_by_hand_keeps_its_fields() -> None:
    assert Prediction(id="x", error="boom").error == "boom"
