"""Inputs checked against the model catalogue before a task is sent: one Client's checks.

:class:`InputChecks` holds a Client's :class:`~wavespeed_async._runtime.catalog_cache.CatalogCache`
and applies :class:`~wavespeed_async.CatalogConfig`'s rules to each input:

* a model the catalogue describes is checked against its compiled schema, and every
  problem found is returned (``submit`` raises the first);
* a model the catalogue does not describe, a schema the checker cannot understand, or a
  catalogue that cannot be fetched **fails open**: the input is checked against the
  client's built-in spec when there is one (the FLUX.1 Kontext models), else sent
  unchecked, and one WARNING on the ``wavespeed_async`` logger per model and reason says
  why (a ``logging`` record, not a Python warning: test suites that turn warnings into
  errors are not broken by a catalogue that is down). With ``check="strict"`` such an
  input is refused unless a built-in spec checks it;
* after a failed fetch, inputs go without the catalogue for ``retry_after_s`` (no request,
  no wait); the next input then waits for one new fetch, bounded by ``fetch_timeout_s``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import anyio

from wavespeed_async._core.catalog import RAW_ANSWER, Model
from wavespeed_async._core.errors import TransportError, ValidationError
from wavespeed_async._core.requests import check_with_spec
from wavespeed_async._core.schema import Checker
from wavespeed_async._core.settings import CatalogConfig
from wavespeed_async._core.specs import MODEL_SPECS
from wavespeed_async._core.text import printable
from wavespeed_async._http.media import is_private_host
from wavespeed_async._runtime.catalog_cache import DEFAULT_CACHE_DIR, CatalogCache, _Default

if TYPE_CHECKING:
    from wavespeed_async._runtime.api import Api

__all__ = ["MODELS_PATH", "InputChecks", "cache_dir_for", "catalogue_fetch"]

log = logging.getLogger("wavespeed_async")

#: The catalogue's endpoint.
MODELS_PATH: Final = "/api/v3/models"


def cache_dir_for(config: CatalogConfig, base_url: str) -> Path | _Default | None:
    """Where the catalogue file of ``base_url`` goes: ``config.cache_dir``, else the user's.

    No file (``None``) with ``disk_cache=False``, or by default for a loopback, private or
    ``.invalid`` host, whose catalogue is an emulator's.
    """
    if not config.disk_cache:
        return None
    if config.cache_dir is not None:
        return Path(os.fspath(config.cache_dir)).expanduser()
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if is_private_host(host) or host == "invalid" or host.endswith(".invalid"):
        return None
    return DEFAULT_CACHE_DIR


def catalogue_fetch(api: Callable[[], Api], timeout_s: float) -> Callable[[], Awaitable[bytes]]:
    """The raw body of ``GET /api/v3/models`` through a Client's API caller.

    The call has the caller's retries, headers and limits, all within ``timeout_s``.
    """

    async def fetch() -> bytes:
        caller = api()
        try:
            with anyio.fail_after(timeout_s):
                answer = await caller.call(
                    "GET",
                    MODELS_PATH,
                    RAW_ANSWER,
                    timeout_s=min(timeout_s, caller.timeouts.request_s),
                    deadline=caller.flow.now() + timeout_s,
                )
        except TimeoutError:
            raise TransportError(
                f"GET {MODELS_PATH}: no catalogue within {timeout_s:g} s "
                "(CatalogConfig.fetch_timeout_s)",
                method="GET",
                url=caller.url(MODELS_PATH),
                timed_out=True,
            ) from None
        return answer.data

    return fetch


class InputChecks:
    """A Client's catalogue and the rules that decide, per input, what is checked.

    Args:
        config: The Client's :class:`CatalogConfig`.
        fetch: Returns the raw catalogue body (see :func:`catalogue_fetch`).
        base_url: The API's base URL (it names the catalogue file).
        clock: Monotonic seconds, for the pause after a failed fetch.
    """

    def __init__(
        self,
        config: CatalogConfig,
        fetch: Callable[[], Awaitable[bytes]],
        *,
        base_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        directory = cache_dir_for(config, base_url)
        self.cache = CatalogCache(
            fetch,
            base_url=base_url,
            ttl_s=config.ttl_s,
            cache_dir=directory,
            failure_cooldown_s=config.retry_after_s,
            stale_if_error_s=config.stale_if_error_s,
        )
        self._clock = clock
        self._retry_at = -math.inf
        self._failure = ""
        self._warned: set[tuple[str, str]] = set()
        # The checkers of the catalogue at hand, used without asking the cache (the hot
        # path of every submit) until ``_ready_until`` (wall clock, as the cache's ages).
        self._ready: dict[str, Checker] = {}
        self._ready_from: float | None = None
        self._ready_until = -math.inf

    def __repr__(self) -> str:
        return f"<InputChecks check={self.config.check!r} {self.cache!r}>"

    async def models(self, *, refresh: bool = False) -> list[Model]:
        """Every model of the catalogue, in its order (fetched if needed).

        Raises:
            Exception: What the fetch raised (``TransportError``, ``APIStatusError``,
                ``DecodeError`` for an answer that is no catalogue).
        """
        found = await (self.cache.refresh() if refresh else self.cache.models())
        return list(found.values())

    async def checker(self, model: str) -> Checker | tuple[str, str]:
        """The model's checker, or ``(kind, reason)`` when the catalogue cannot check it.

        ``kind`` is ``"unavailable"`` (no catalogue at hand), ``"absent"`` (not listed) or
        ``"uncheckable"`` (a schema the checker does not understand).
        """
        if self._clock() < self._retry_at:
            return "unavailable", self._failure
        try:
            checker = await self.cache.checker(model)
        except Exception as exc:  # whatever the fetch raised: fail open
            self._retry_at = self._clock() + self.config.retry_after_s
            self._failure = (
                f"the model catalogue could not be fetched ({type(exc).__name__}: "
                f"{printable(str(exc), limit=200)})"
            )
            return "unavailable", self._failure
        if checker is None:
            return "absent", "the model catalogue does not list it"
        if checker.uncheckable:
            return "uncheckable", f"its schema in the catalogue cannot be used ({checker.reason})"
        self._keep(checker)
        return checker

    def _keep(self, checker: Checker) -> None:
        """Remember a checker of the current catalogue until it is due for a refresh.

        One kept after a failed refresh is remembered until the next attempt.
        """
        fetched_at = self.cache.fetched_at
        if fetched_at is None:  # pragma: no cover - a checker comes from a catalogue
            return
        if fetched_at != self._ready_from:
            self._ready.clear()
            self._ready_from = fetched_at
        now = time.time()
        due = fetched_at + self.config.ttl_s
        self._ready_until = due if due > now else now + self.config.retry_after_s
        self._ready[checker.model_id] = checker

    async def problems(self, model: str, body: Mapping[str, Any]) -> list[ValidationError]:
        """Every problem that keeps ``body`` from being sent to ``model`` (``[]``: send it).

        Per the rules of the module doc. May log one warning, and emit the built-in spec's
        ``UnknownFieldWarning``.
        """
        if self.config.check == "off":
            return _spec_problems(model, body)
        found: Checker | tuple[str, str]
        ready = self._ready.get(model)
        if ready is not None and time.time() < self._ready_until:
            found = ready
        else:
            found = await self.checker(model)
        if isinstance(found, Checker):
            if not found.exact:
                self._warn_once(
                    model,
                    "partial",
                    f"inputs of {model} are checked only in part: {found.reason}",
                )
            return found.problems(body)
        kind, reason = found
        if model in MODEL_SPECS:
            self._warn_once(
                model,
                kind,
                f"inputs of {model} are checked against the client's built-in spec: {reason}",
            )
            return _spec_problems(model, body)
        if self.config.check == "strict":
            allowed = "a model whose inputs the catalogue can check"
            return [
                ValidationError(
                    "model",
                    f"model: {model} not sent: {reason}, and CatalogConfig(check='strict') "
                    "refuses inputs that cannot be checked; allowed: "
                    f"{allowed} (or check='on' to send them unchecked)",
                    allowed=allowed,
                )
            ]
        self._warn_once(
            model,
            kind,
            f"inputs of {model} are sent unchecked: {reason} (said once per model; "
            "CatalogConfig(check='strict') refuses such inputs)",
        )
        return _spec_problems(model, body)  # the control fields every model takes

    async def check(self, model: str, body: Mapping[str, Any]) -> None:
        """Raise the first of :meth:`problems`, if any."""
        found = await self.problems(model, body)
        if found:
            raise found[0]

    def _warn_once(self, model: str, kind: str, message: str) -> None:
        key = (model, kind)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("%s", message)


def _spec_problems(model: str, body: Mapping[str, Any]) -> list[ValidationError]:
    try:
        check_with_spec(model, body)
    except ValidationError as exc:
        return [exc]
    return []
