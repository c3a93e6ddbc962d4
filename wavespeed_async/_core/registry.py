"""Backends found by URL scheme: integrations fill the registry, the core never imports them.

``Client(share="redis://...")`` and a Redis ledger name their backend by a URL. The core
looks the scheme up here: first among backends registered in this process
(:func:`register`), then among the package entry points of the group
``wavespeed_async.<kind>`` that installed packages declare (this package declares its own
``redis`` integration there), loaded only when such a URL is used. So
``import wavespeed_async`` imports no integration, and a third-party package can add a
scheme by declaring an entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.install import install_command
from wavespeed_async._core.secret import redacted_url

__all__ = ["Kind", "register", "resolve", "scheme_of"]

#: What can be resolved: a share of the account's limits, or a job ledger.
Kind = Literal["share", "ledger"]
_KINDS: Final = ("share", "ledger")
#: The extra that brings each of this package's own schemes.
_EXTRAS: Final = {"redis": "redis", "rediss": "redis", "unix": "redis"}

_registered: dict[tuple[str, str], Callable[..., Any]] = {}


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case (``""`` when it has none)."""
    return urlsplit(url).scheme.lower()


def register(kind: Kind, scheme: str, factory: Callable[..., Any]) -> None:
    """Serve ``scheme://`` URLs of ``kind`` with ``factory(url, **options)``."""
    if kind not in _KINDS:
        raise ValidationError("kind", f"kind: {kind!r}; allowed: one of {', '.join(_KINDS)}")
    _registered[(kind, scheme.lower())] = factory


def _entry_point(kind: str, scheme: str) -> Callable[..., Any] | None:
    for ep in entry_points(group=f"wavespeed_async.{kind}"):
        if ep.name == scheme:
            factory: Callable[..., Any] = ep.load()  # an ImportError names the missing extra
            _registered[(kind, scheme)] = factory
            return factory
    return None


def resolve(kind: Kind, url: str, **options: Any) -> Any:
    """The backend of ``kind`` for ``url``, built by the factory its scheme names.

    Raises:
        ValidationError: no installed backend serves the scheme.
        ModuleNotFoundError: the backend's extra is not installed (the message says which).
    """
    scheme = scheme_of(url)
    factory = _registered.get((kind, scheme)) or _entry_point(kind, scheme)
    if factory is None:
        extra = _EXTRAS.get(scheme)
        hint = f"; install it with: {install_command(extra)}" if extra else ""
        raise ValidationError(
            kind,
            f"{kind}: no installed backend serves {redacted_url(url)!r}"
            f" (scheme {scheme or 'missing'!r}){hint}",
        )
    return factory(url, **options)
