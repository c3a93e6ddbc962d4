"""WaveSpeed's own webhook signature scheme (it is NOT Standard Webhooks).

A delivery carries three headers: ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v3,<hex>``, where ``<hex>`` is the hex HMAC-SHA256 of
``"{id}.{timestamp}.{raw body}"`` keyed with the account's secret with its ``whsec_`` prefix
removed and **not** base64-decoded. Stock Standard-Webhooks libraries reject these.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import msgspec

from wavespeed_async._core.errors import ValidationError, WebhookVerificationError
from wavespeed_async._core.models import Prediction, bare_prediction_decoder

__all__ = [
    "DEFAULT_REPLAY_CACHE_SIZE",
    "DEFAULT_TOLERANCE_S",
    "Delivery",
    "ReplayGuard",
    "check_secret",
    "check_signature",
    "check_tolerance",
    "decode_delivery",
    "read_headers",
    "sign_webhook",
    "verify_webhook",
]

#: Deliveries older (or further in the future) than this many seconds are rejected.
DEFAULT_TOLERANCE_S: Final = 300.0
#: Delivery ids remembered to refuse replays (within the tolerance window).
DEFAULT_REPLAY_CACHE_SIZE: Final = 10_000
_PREFIX: Final = "whsec_"
_SCHEME: Final = "v3"


def _key(secret: str) -> bytes:
    return secret.removeprefix(_PREFIX).encode()


def check_secret(secret: object, field: str = "secret") -> str:
    """Return ``secret`` if it can sign; an empty one would make every signature pass.

    Raises:
        ValidationError: not a string, or empty (also ``"whsec_"`` alone).
    """
    if not isinstance(secret, str) or not secret.removeprefix(_PREFIX):
        shown = "the empty secret" if isinstance(secret, str) else type(secret).__name__
        raise ValidationError(
            field, f"{field}: {shown} is not allowed; allowed: a non-empty whsec_... secret"
        )
    return secret


def check_tolerance(tolerance_s: object) -> float:
    """Return ``tolerance_s`` as a float if it is a finite number of seconds > 0.

    Raises:
        ValidationError: NaN, infinite, zero or negative (NaN would accept any timestamp).
    """
    if (
        isinstance(tolerance_s, bool)
        or not isinstance(tolerance_s, (int, float))
        or not math.isfinite(tolerance_s)
        or tolerance_s <= 0
    ):
        raise ValidationError(
            "tolerance_s", f"tolerance_s: {tolerance_s!r}; allowed: a finite number of seconds > 0"
        )
    return float(tolerance_s)


def sign_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value (``"v3,<hex>"``) for a delivery."""
    message = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(_key(secret), message, hashlib.sha256).hexdigest()
    return f"{_SCHEME},{digest}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The checked headers of a delivery (not yet its signature)."""

    id: str
    timestamp: int
    signatures: tuple[str, ...]


def read_headers(
    headers: Mapping[str, str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Delivery:
    """Check a delivery's headers and timestamp: cheap, and needs no secret.

    Raises:
        ValidationError: ``tolerance_s`` is not a finite number > 0.
        WebhookVerificationError: a header is missing or malformed, or the timestamp is
            outside the window.
    """
    tolerance_s = check_tolerance(tolerance_s)
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
    if not abs(skew) <= tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {skew:.0f} s from now; allowed: within {tolerance_s:.0f} s"
        )
    # A header may carry several space-separated signatures (during secret rotation).
    return Delivery(webhook_id, timestamp, tuple(sig_header.split()))


def check_signature(secret: str, delivery: Delivery, body: bytes) -> None:
    """Check the signature of a delivery against its raw body.

    Raises:
        ValidationError: the secret is empty.
        WebhookVerificationError: no signature matches, or the headers are not text.
    """
    check_secret(secret)
    try:
        expected = sign_webhook(secret, delivery.id, delivery.timestamp, body).encode()
        candidates = [c.encode() for c in delivery.signatures]
    except UnicodeEncodeError:  # lone surrogates: undecodable header bytes
        raise WebhookVerificationError("webhook headers are not valid text") from None
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookVerificationError("webhook-signature does not match the body")


def decode_delivery(body: bytes) -> Prediction:
    """Decode a delivery's body (after its signature was checked) into a Prediction.

    Raises:
        WebhookVerificationError: the body is not a Prediction (not JSON, bad UTF-8, too
            deeply nested, the wrong shape).
    """
    try:
        return bare_prediction_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise WebhookVerificationError(
            f"webhook body is not a prediction: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None


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
            its ``whsec_`` prefix. Never empty.
        headers: The request headers; looked up case-insensitively.
        body: The raw request body, exactly as received (not re-serialised JSON).
        tolerance_s: How far the timestamp may be from ``now``, in seconds (finite, > 0).
        now: Unix time to check against (default: the current time).

    Raises:
        ValidationError: an empty secret or a ``tolerance_s`` that is not finite and > 0.
        WebhookVerificationError: a header is missing or malformed, the timestamp is outside
            the window, the signature does not match, or the body is not a Prediction.
    """
    check_secret(secret)
    delivery = read_headers(headers, tolerance_s=tolerance_s, now=now)
    check_signature(secret, delivery, body)
    return decode_delivery(body)


class ReplayGuard:
    """Remembers the ids of accepted deliveries to refuse replays; bounded memory.

    An id is kept while its timestamp is within ``tolerance_s`` of now (older deliveries
    are refused by their timestamp anyway), and at most ``max_ids`` ids are kept (the
    oldest are forgotten first).
    """

    __slots__ = ("_seen", "max_ids", "tolerance_s")

    def __init__(
        self, *, tolerance_s: float = DEFAULT_TOLERANCE_S, max_ids: int = DEFAULT_REPLAY_CACHE_SIZE
    ) -> None:
        self.tolerance_s = check_tolerance(tolerance_s)
        if isinstance(max_ids, bool) or not isinstance(max_ids, int) or max_ids < 1:
            raise ValidationError("max_ids", f"max_ids: {max_ids!r}; allowed: an integer >= 1")
        self.max_ids = max_ids
        self._seen: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, delivery: Delivery, *, now: float | None = None) -> bool:
        """Record ``delivery``; ``False`` if its id was already recorded (a replay)."""
        current = time.time() if now is None else now
        seen = self._seen
        while seen:
            oldest_id, oldest_ts = next(iter(seen.items()))
            if len(seen) < self.max_ids and current - oldest_ts <= self.tolerance_s:
                break
            del seen[oldest_id]
        if delivery.id in seen:
            return False
        seen[delivery.id] = delivery.timestamp
        return True
