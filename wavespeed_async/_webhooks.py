"""WaveSpeed's own webhook signature scheme (it is NOT Standard Webhooks).

A delivery carries three headers: ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v3,<hex>``, where ``<hex>`` is the hex HMAC-SHA256 of
``"{id}.{timestamp}.{raw body}"`` keyed with the account's secret with its ``whsec_`` prefix
removed and **not** base64-decoded. Stock Standard-Webhooks libraries reject these.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Final

import msgspec

from wavespeed_async._errors import WebhookVerificationError
from wavespeed_async._models import Prediction, bare_prediction_decoder

__all__ = ["DEFAULT_TOLERANCE_S", "sign_webhook", "verify_webhook"]

#: Deliveries older (or further in the future) than this many seconds are rejected.
DEFAULT_TOLERANCE_S: Final = 300.0
_PREFIX: Final = "whsec_"
_SCHEME: Final = "v3"


def _key(secret: str) -> bytes:
    return secret.removeprefix(_PREFIX).encode()


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value (``"v3,<hex>"``) for a delivery."""
    message = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(_key(secret), message, hashlib.sha256).hexdigest()
    return f"{_SCHEME},{digest}"


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Prediction:
    """Verify a delivery against its raw body and return the Prediction it carries.

    Args:
        secret: The account's webhook secret (``client.webhook_secret()``), with or without
            its ``whsec_`` prefix.
        headers: The request headers; looked up case-insensitively.
        body: The raw request body, exactly as received (not re-serialised JSON).
        tolerance_s: How far the timestamp may be from ``now``, in seconds.
        now: Unix time to check against (default: the current time).

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is outside
            the window, the signature does not match, or the body is not a Prediction.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id")
    ts_text = lowered.get("webhook-timestamp")
    sig_header = lowered.get("webhook-signature")
    if not webhook_id or not ts_text or not sig_header:
        missing = [
            name
            for name, value in (
                ("webhook-id", webhook_id),
                ("webhook-timestamp", ts_text),
                ("webhook-signature", sig_header),
            )
            if not value
        ]
        raise WebhookVerificationError(f"missing webhook header(s): {', '.join(missing)}")
    current = time.time() if now is None else now
    try:
        timestamp = int(ts_text)
        skew = float(current - timestamp)  # OverflowError for absurd integers
    except (ValueError, OverflowError):
        raise WebhookVerificationError(
            f"webhook-timestamp is not a unix time in seconds: {ts_text!r:.40}"
        ) from None
    if abs(skew) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {skew:.0f} s from now; allowed: within {tolerance_s:.0f} s"
        )
    try:
        expected = sign_webhook(secret, webhook_id, timestamp, body).encode()
        # A header may carry several space-separated signatures (during secret rotation).
        candidates = [c.encode() for c in sig_header.split()]
    except UnicodeEncodeError:  # lone surrogates: undecodable header bytes
        raise WebhookVerificationError("webhook headers are not valid text") from None
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookVerificationError("webhook-signature does not match the body")
    try:
        return bare_prediction_decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise WebhookVerificationError(f"webhook body is not a prediction: {exc}") from None
