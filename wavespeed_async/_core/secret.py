"""The API key, held so that no repr, str or traceback with locals ever shows it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "SigningKey", "masked", "masked_url", "redacted_url"]

_MASK: Final = "'***'"


class _Masked(str):
    """A real ``str`` (for the HTTP layer, HMAC, ``Client(api_key=...)``), masked in ``repr``.

    ``repr`` is what dict reprs and traceback locals show.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return _MASK


class Secret:
    """A credential, masked in ``repr()`` and ``str()``.

    :meth:`auth_header` is the only way to the value, and builds the ``Authorization``
    header with it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def fingerprint(self, context: str) -> str:
        """A SHA-256 (hex) of ``context`` and the value.

        It names things per credential (a shared namespace, say) without revealing it.
        """
        return hashlib.sha256(f"{context}\n{self._value}".encode()).hexdigest()

    def auth_header(self) -> str:
        """The ``Authorization`` header value (``Bearer <key>``), masked in reprs."""
        return _Masked(f"Bearer {self._value}")

    def signing_key(self, label: str) -> SigningKey:
        """A key for ``label`` derived from the value (an HMAC of the label keyed by it).

        It authenticates what processes of one account share, and reveals nothing of the
        value, nor of the keys of other labels.
        """
        return SigningKey(hmac.digest(self._value.encode(), label.encode(), "sha256"))


def _framed(parts: tuple[bytes, ...]) -> bytes:
    """``parts`` joined so that no two different tuples give the same bytes."""
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


class SigningKey:
    """A derived key that signs and checks values (HMAC-SHA256). Its ``repr()`` is masked.

    Made by :meth:`Secret.signing_key`; :meth:`derive` makes keys of narrower labels.
    """

    __slots__ = ("_key",)

    #: The length of a tag, in bytes (hex digits of an HMAC-SHA256).
    TAG_BYTES: Final = 64

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "SigningKey('***')"

    __str__ = __repr__

    def derive(self, label: str) -> SigningKey:
        """The key of ``label`` under this one."""
        return SigningKey(hmac.digest(self._key, label.encode(), "sha256"))

    def sign(self, *parts: bytes) -> bytes:
        """The tag of ``parts`` (hex, :attr:`TAG_BYTES` long)."""
        return hmac.new(self._key, _framed(parts), "sha256").hexdigest().encode()

    def verify(self, tag: bytes, *parts: bytes) -> bool:
        """Whether ``tag`` is the tag of ``parts`` (in constant time)."""
        return hmac.compare_digest(tag, self.sign(*parts))


def masked(value: str) -> str:
    """``value`` as a ``str`` whose ``repr`` is masked.

    For a credential that must stay a string (an API key on its way to a Client, a webhook
    secret), so that a traceback printed with its locals does not show it.
    """
    return _Masked(value)


class _MaskedURL(str):
    """A URL as a real ``str`` whose ``repr`` shows it without its password."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redacted_url(self))


def masked_url(url: str) -> str:
    """``url`` as a ``str`` whose ``repr`` hides its credentials (``***@host``).

    For a URL that may carry a password (a Redis share or ledger) held in a field or a local
    whose repr a dataclass, a log line or a traceback printed with its locals may show.
    """
    return _MaskedURL(url)


def redacted_url(url: str) -> str:
    """``url`` without its password (and user name), fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return str(url)  # a plain str, even from a masked one
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
