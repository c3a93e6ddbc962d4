"""What the Redis share stores and publishes, and the checks each value read back must pass.

Anyone who can write to the server can write these keys and publish on the channel, so a
value read back is never trusted as it is:

* a **result** (stored under ``P:r:<id>``, or published in a ``d`` message) is
  ``<task id>\\n<tag>\\n<payload>``, where the tag is an HMAC of the task id and the
  payload under a key derived from the API key, which the server never sees. A result is
  used only if its tag is valid, it is the result of the task it is read for, and it is
  final (completed, failed, ...): a forged, moved or unfinished result is rejected;
* a **cool-down** (``c<ms>``) is a plain number of at most 15 digits, cut down to the
  Client's ``RetryConfig.max_retry_after_s`` by the reader;
* anything larger than :data:`MAX_VALUE_BYTES` is rejected without being read further.
"""

from __future__ import annotations

from typing import Final

import msgspec

from wavespeed_async._core.models import Prediction, bare_prediction_decoder
from wavespeed_async._core.secret import SigningKey

__all__ = ["MAX_VALUE_BYTES", "Rejected", "cooldown_ms", "read_result", "result_value"]

#: The largest result the share stores or reads: a delivery is a task with output URLs (a
#: few KiB); this leaves room for base64 outputs handed to ``Client.deliver``.
MAX_VALUE_BYTES: Final = 8 * 1024 * 1024
_MAX_DIGITS: Final = 15
_RESULT: Final = b"result"


class Rejected(Exception):
    """A value read from the share that is not used (the reason is the message)."""


def result_value(signer: SigningKey, prediction: Prediction) -> bytes:
    """``prediction`` as the share stores and publishes it: id, tag, payload."""
    payload = msgspec.json.encode(prediction)
    tid = prediction.id.encode()
    return tid + b"\n" + signer.sign(_RESULT, tid, payload) + b"\n" + payload


def read_result(signer: SigningKey, value: bytes, task_id: str | None = None) -> Prediction:
    """The final result in ``value``, checked (for ``task_id`` when given).

    Raises:
        Rejected: not a result signed with ``signer``, the result of another task, not
            final, or not decodable.
    """
    if len(value) > MAX_VALUE_BYTES:
        raise Rejected(f"larger than {MAX_VALUE_BYTES} bytes")
    tid, sep1, rest = value.partition(b"\n")
    tag, sep2, payload = rest.partition(b"\n")
    if not (sep1 and sep2 and len(tag) == SigningKey.TAG_BYTES):
        raise Rejected("not a signed result")
    if not signer.verify(tag, _RESULT, tid, payload):
        raise Rejected("not signed with this account's key")
    if task_id is not None and tid != task_id.encode():
        raise Rejected("the result of another task")
    try:
        pred = bare_prediction_decoder.decode(payload)
    except Exception as exc:
        raise Rejected(f"undecodable ({type(exc).__name__})") from None
    if pred.id.encode() != tid:
        raise Rejected("the result of another task")
    if not pred.done:
        raise Rejected(f"not final (status {pred.status!r:.40})")
    return pred


def cooldown_ms(body: bytes) -> int:
    """The milliseconds of a ``c`` message's body.

    Raises:
        Rejected: not a plain number of at most 15 digits.
    """
    if not (0 < len(body) <= _MAX_DIGITS and body.isdigit()):
        raise Rejected("a cool-down that is not a number of milliseconds")
    return int(body)
