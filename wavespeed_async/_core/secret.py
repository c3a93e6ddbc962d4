"""The API key, held so that no repr, str or traceback with locals ever shows it."""

from __future__ import annotations

import hashlib
from typing import Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Secret", "masked", "redacted_url"]

_MASK: Final = "'***'"


class _Masked(str):
    """A real ``str`` (for the HTTP layer, HMAC, ``Client(api_key=...)``), masked in
    ``repr`` (which is what dict reprs and traceback locals show)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return _MASK


class Secret:
    """A credential. ``repr()`` and ``str()`` are masked; :meth:`auth_header` is the only
    way to the value, and builds the ``Authorization`` header with it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def fingerprint(self, context: str) -> str:
        """A SHA-256 (hex) of ``context`` and the value: names things per credential
        (a shared namespace, say) without revealing it."""
        return hashlib.sha256(f"{context}\n{self._value}".encode()).hexdigest()

    def auth_header(self) -> str:
        """The ``Authorization`` header value (``Bearer <key>``), masked in reprs."""
        return _Masked(f"Bearer {self._value}")


def masked(value: str) -> str:
    """``value`` as a ``str`` whose ``repr`` is masked: for a credential that must stay a
    string (an API key on its way to a Client, a webhook secret), so that a traceback
    printed with its locals does not show it."""
    return _Masked(value)


def redacted_url(url: str) -> str:
    """``url`` without its password (and user name), fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return str(url)  # a plain str, even from a masked one
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
