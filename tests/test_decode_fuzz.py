"""Whatever bytes the server or a webhook sender chooses, decoding them ends as expected.

It ends in a value or in the one family of errors the callers catch: never in an exception
nobody expects.

The hostile-server tests send a few chosen answers through the whole client; these
properties try thousands of arbitrary ones against the decoding layer itself.
"""

from __future__ import annotations

import contextlib
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavespeed_async import WebhookVerificationError, verify_webhook
from wavespeed_async._core.models import (
    DECODE_FAILURES,
    any_decoder,
    balance_decoder,
    bare_prediction_decoder,
    prediction_decoder,
    upload_decoder,
    webhook_secret_decoder,
)
from wavespeed_async._core.text import json_printable
from wavespeed_async._core.webhooks import decode_delivery, sign_webhook
from wavespeed_async._runtime.api import _error_message

DECODERS: list[msgspec.json.Decoder[Any]] = [
    prediction_decoder,
    bare_prediction_decoder,
    balance_decoder,
    upload_decoder,
    webhook_secret_decoder,
    any_decoder,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

FIELDS = ["id", "model", "status", "outputs", "urls", "error", "has_nsfw_contents", "timings",
          "created_at", "executionTime", "input"]  # fmt: skip


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Answers shaped like the API's, with any JSON value in any field."""
    data = {name: draw(json_values) for name in draw(st.sets(st.sampled_from(FIELDS)))}
    env: dict[str, Any] = {"data": data}
    for name in draw(st.sets(st.sampled_from(["code", "message", "error", "error_code"]))):
        env[name] = draw(json_values)
    return msgspec.json.encode(env)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """An API-shaped answer with a few bytes spliced in (bad UTF-8 inside a string...)."""
    body = draw(envelopes())
    at = draw(st.integers(0, len(body)))
    return body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at:]


answers = st.binary(max_size=300) | envelopes() | damaged() | json_values.map(msgspec.json.encode)


def _decodes_or_fails_typed(decoder: msgspec.json.Decoder[Any], body: bytes) -> None:
    with contextlib.suppress(*DECODE_FAILURES):  # anything else fails the test
        decoder.decode(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=answers, which=st.integers(0, len(DECODERS) - 1))
def test_every_answer_decodes_or_fails_with_a_decode_failure(body: bytes, which: int) -> None:
    _decodes_or_fails_typed(DECODERS[which], body)


@settings(max_examples=200)
@given(body=answers, status=st.integers(100, 599))
def test_an_error_answer_always_gives_a_printable_message(body: bytes, status: int) -> None:
    message, code = _error_message(body, status)
    assert message and len(message) <= 300
    assert not any(unicodedata.category(c) == "Cc" for c in message)
    assert code is None or isinstance(code, int)


@settings(max_examples=200)
@given(body=answers)
def test_a_delivery_body_is_a_prediction_or_a_verification_error(body: bytes) -> None:
    try:
        pred = decode_delivery(body)
    except WebhookVerificationError:
        return
    assert isinstance(pred.id, str)


SECRET = "whsec_" + "a" * 32


@settings(max_examples=300)
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x-other"]),
        st.text(max_size=60),
    ),
    body=answers,
)
def test_any_headers_are_accepted_only_with_a_valid_signature(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, body, now=1_700_000_000)


@settings(max_examples=200)
@given(body=answers)
def test_a_signed_body_is_a_prediction_or_a_verification_error(body: bytes) -> None:
    now = 1_700_000_000
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign_webhook(SECRET, "msg_1", now, body),
    }
    try:
        pred = verify_webhook(SECRET, headers, body, now=now)
    except WebhookVerificationError as exc:
        error = str(exc)
    else:
        assert isinstance(pred.id, str)
        return
    assert "not a prediction" in error  # the signature was right: only the body may fail


@settings(max_examples=300)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
))  # fmt: skip
def test_json_made_printable_is_the_same_value_and_prints_nothing_that_acts(value: Any) -> None:
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    shown = json_printable(text)
    assert msgspec.json.decode(shown) == value
    assert all(ch.isprintable() or ch in "\n " for ch in shown)
