"""WaveSpeed's webhook signature scheme, checked against an independent HMAC computation.

``v3,<hex>`` HMAC-SHA256 over ``"{id}.{timestamp}.{raw body}"``, keyed with the secret minus
its ``whsec_`` prefix and NOT base64-decoded; a 300 s window; anything wrong is a
``WebhookVerificationError`` and never another exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavespeed_async import (
    Prediction,
    WaveSpeedError,
    WebhookVerificationError,
    sign_webhook,
    verify_webhook,
)

SECRET = "whsec_c2VjcmV0LW5vdC1iYXNlNjQtZGVjb2RlZA"
NOW = 1_750_000_000
BODY = json.dumps(
    {
        "id": "0123456789abcdef0123456789abcdef",
        "model": "wavespeed-ai/flux-kontext-dev",
        "status": "completed",
        "outputs": ["https://cdn.example/a.png"],
        "executionTime": 1234,
    }
).encode()


def digest(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    message = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def headers(
    *,
    secret: str = SECRET,
    webhook_id: str = "msg_1",
    timestamp: int = NOW,
    body: bytes = BODY,
) -> dict[str, str]:
    """Headers of a genuine delivery, signed without the library's code."""
    key = secret.removeprefix("whsec_").encode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v3," + digest(key, webhook_id, str(timestamp), body),
    }


def test_a_genuine_delivery_returns_its_prediction() -> None:
    pred = verify_webhook(SECRET, headers(), BODY, now=NOW)
    assert isinstance(pred, Prediction)
    assert pred.id == "0123456789abcdef0123456789abcdef"
    assert pred.status == "completed" and pred.outputs == ["https://cdn.example/a.png"]


def test_the_key_is_the_secret_text_without_prefix_not_base64_decoded() -> None:
    raw = SECRET.removeprefix("whsec_")
    # Signed with the raw text: accepted whether the caller keeps the prefix or not.
    assert verify_webhook(SECRET, headers(), BODY, now=NOW).id
    assert verify_webhook(raw, headers(), BODY, now=NOW).id
    # Standard Webhooks would key with base64-decode(raw): that is not WaveSpeed's scheme.
    decoded_key = base64.b64decode(raw + "=" * (-len(raw) % 4))
    std = dict(headers())
    std["webhook-signature"] = "v3," + digest(decoded_key, "msg_1", str(NOW), BODY)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(SECRET, std, BODY, now=NOW)


def test_sign_webhook_agrees_with_an_independent_hmac() -> None:
    assert sign_webhook(SECRET, "msg_1", NOW, BODY) == headers()["webhook-signature"]


def test_header_names_are_case_insensitive() -> None:
    upper = {k.title(): v for k, v in headers().items()}
    assert verify_webhook(SECRET, upper, BODY, now=NOW).id


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("forged signature", {"webhook-signature": "v3," + "0" * 64}),
        ("signature of another scheme", {"webhook-signature": "v1," + "0" * 64}),
        ("empty signature", {"webhook-signature": ""}),
        ("signature without scheme", {"webhook-signature": "0" * 64}),
        ("another id", {"webhook-id": "msg_2"}),
        ("another timestamp", {"webhook-timestamp": str(NOW + 1)}),
        ("non-integer timestamp", {"webhook-timestamp": "12.5"}),
        ("word timestamp", {"webhook-timestamp": "now"}),
        ("empty id", {"webhook-id": ""}),
    ],
)
def test_tampered_headers_are_refused(name: str, change: dict[str, str]) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, {**headers(), **change}, BODY, now=NOW)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook("whsec_another", headers(), BODY, now=NOW)


def test_a_changed_body_is_refused() -> None:
    changed = BODY.replace(b"completed", b"failed")
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(SECRET, headers(), changed, now=NOW)
    # Re-serialised JSON (other spacing) is another body: verify the raw bytes.
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers(), reserialised, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_named(missing: str) -> None:
    partial = {k: v for k, v in headers().items() if k != missing}
    with pytest.raises(WebhookVerificationError, match=missing):
        verify_webhook(SECRET, partial, BODY, now=NOW)


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, True), (300, True), (301, False)])
def test_the_timestamp_window_is_300_s_both_ways(offset: int, ok: bool) -> None:
    signed = headers(timestamp=NOW + offset)
    if ok:
        assert verify_webhook(SECRET, signed, BODY, now=NOW).id
    else:
        with pytest.raises(WebhookVerificationError, match="from now"):
            verify_webhook(SECRET, signed, BODY, now=NOW)


def test_the_window_can_be_changed() -> None:
    signed = headers(timestamp=NOW - 600)
    assert verify_webhook(SECRET, signed, BODY, now=NOW, tolerance_s=900).id
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, signed, BODY, now=NOW, tolerance_s=60)


def test_any_of_several_signatures_may_match_during_rotation() -> None:
    good = headers()["webhook-signature"]
    old = "v3," + digest(b"old-secret", "msg_1", str(NOW), BODY)
    for value in (f"{old} {good}", f"{good} {old}"):
        assert verify_webhook(SECRET, {**headers(), "webhook-signature": value}, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, {**headers(), "webhook-signature": f"{old} {old}"}, BODY, now=NOW)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"status": "completed"}', b"\xff\xfe", b'{"id": 5}'],
)
def test_a_signed_body_that_is_not_a_prediction_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookVerificationError, match="not a prediction"):
        verify_webhook(SECRET, headers(body=body), body, now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        "9" * 400,
        "-" + "9" * 400,
        "9" * 5000,
        "1e9",
    ],
)
def test_absurd_timestamps_are_refused_not_crashed_on(timestamp: str) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, {**headers(), "webhook-timestamp": timestamp}, BODY, now=NOW)


@pytest.mark.parametrize(
    "name",
    [
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ],
)
def test_undecodable_header_text_is_refused_not_crashed_on(name: str) -> None:
    # aiohttp decodes header bytes with surrogateescape: a lone surrogate can arrive.
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, {**headers(), name: "v3,\udcff"}, BODY, now=NOW)


def test_the_error_belongs_to_the_library_tree() -> None:
    with pytest.raises(WaveSpeedError):
        verify_webhook(SECRET, {}, BODY, now=NOW)


# Any text, lone surrogates included: aiohttp hands over undecodable header bytes that way.
any_text = st.text(st.characters(exclude_categories=()), max_size=80)
GENUINE = headers()


def header_value(name: str) -> st.SearchStrategy[str | None]:
    """Absent, genuine, genuine with junk around it, or any text."""
    genuine = GENUINE[name]
    return st.one_of(
        st.none(),
        st.just(genuine),
        st.builds(lambda a, b: a + genuine + b, any_text, any_text),
        any_text,
    )


timestamps = st.one_of(
    header_value("webhook-timestamp"),
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.integers(min_value=NOW - 400, max_value=NOW + 400).map(str),
)


@settings(max_examples=500, report_multiple_bugs=False)
@given(
    webhook_id=header_value("webhook-id"),
    timestamp=timestamps,
    signature=header_value("webhook-signature"),
    title_case=st.booleans(),
    body=st.one_of(st.just(BODY), st.binary(max_size=200)),
)
def test_arbitrary_headers_and_bodies_raise_only_the_typed_error(
    webhook_id: str | None,
    timestamp: str | None,
    signature: str | None,
    title_case: bool,
    body: bytes,
) -> None:
    given_headers = {
        (name.title() if title_case else name): value
        for name, value in (
            ("webhook-id", webhook_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if value is not None
    }
    try:
        pred = verify_webhook(SECRET, given_headers, body, now=NOW)
    except WebhookVerificationError:
        return
    # Only a genuine delivery of a prediction gets through.
    assert isinstance(pred, Prediction)
    assert body == BODY and webhook_id == GENUINE["webhook-id"]


@settings(max_examples=100)
@given(
    webhook_id=st.text(min_size=1, max_size=40).filter(str.strip),
    body=st.binary(max_size=300),
    secret=st.text(min_size=1, max_size=40),
)
def test_signing_and_verifying_agree_for_any_id_secret_and_body(
    webhook_id: str, body: bytes, secret: str
) -> None:
    hdrs = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(NOW),
        "webhook-signature": sign_webhook(secret, webhook_id, NOW, body),
    }
    expected = digest(secret.removeprefix("whsec_").encode(), webhook_id, str(NOW), body)
    assert hdrs["webhook-signature"] == "v3," + expected
    try:
        msgspec.json.decode(body, type=Prediction)
    except msgspec.DecodeError:
        # The signature checks out, so only the body may be refused.
        with pytest.raises(WebhookVerificationError, match="not a prediction"):
            verify_webhook(secret, hdrs, body, now=NOW)
    else:
        assert verify_webhook(secret, hdrs, body, now=NOW).id is not None
