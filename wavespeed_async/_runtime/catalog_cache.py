"""The model catalogue, fetched once and shared by every caller and every process.

:class:`CatalogCache` keeps the decoded catalogue (``GET /api/v3/models``) in memory for
``ttl_s`` and in a file of the user's cache directory, so that a thousand concurrent
submits, and the next run of the program, cost no extra request::

    cache = CatalogCache(fetch_models_body, base_url="https://api.wavespeed.ai")
    checker = await cache.checker("wavespeed-ai/flux-dev-lora")
    if checker is not None:
        checker.check(body)

How it behaves:

* **Single flight.** However many tasks ask at once, one fetch runs; the others wait for
  it and share its result, or its failure. When the task doing the fetch is cancelled, a
  waiting task takes over, so no waiter is left hanging or inherits a cancellation.
* **Failures are not cached**, except briefly: for ``failure_cooldown_s`` after a failed
  fetch, callers get that failure at once instead of each starting a new fetch against a
  server that just failed. Then the next call tries again.
* **Stale if error.** When a refresh fails but a catalogue younger than
  ``stale_if_error_s`` is at hand (in memory or on disk), it is used (and a warning
  logged): a model's schema rarely changes, and checking against yesterday's schema beats
  not checking.
* **The disk cache** is one file per API base URL, named by a hash of the URL without its
  credentials, query or fragment (neither the file's name nor its content holds the URL).
  It is written atomically (a temporary file in the same directory, then ``os.replace``),
  read when younger than ``ttl_s``, and ignored (then overwritten) when it is corrupt,
  unreadable, too large or for another URL: the disk cache never makes a call fail. File
  work runs in a worker thread, off the event loop. ``cache_dir=None`` turns it off.

Ages use the wall clock (``time.time``), since the file is shared between processes.
A cache belongs to one event loop, like the Client that owns it.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import math
import os
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

import anyio
import anyio.to_thread
import msgspec

from wavespeed_async._core.catalog import CatalogProblem, Model, decode_models
from wavespeed_async._core.errors import DecodeError
from wavespeed_async._core.schema import Checker, compile_schema

__all__ = ["DEFAULT_CACHE_DIR", "CatalogCache", "cache_key", "default_cache_dir"]

log = logging.getLogger("wavespeed_async")

_FORMAT: Final = "wavespeed-async model catalogue, 1"
#: A cache file larger than this is not read (the catalogue is a few megabytes at most).
_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
#: A file stamped further in the future than this is not trusted (clocks drift a little).
_MAX_CLOCK_SKEW_S: Final = 300.0


class _Default(enum.Enum):
    DIR = "the user's cache directory"


#: ``cache_dir``'s default: :func:`default_cache_dir`, looked up when the cache is built.
DEFAULT_CACHE_DIR: Final = _Default.DIR


def default_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/wavespeed-async``, else ``~/.cache/wavespeed-async``.

    ``None`` when there is no home directory to put it in.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "wavespeed-async"
    try:
        return Path.home() / ".cache" / "wavespeed-async"
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return None


def cache_key(base_url: str) -> str:
    """The hash that names a base URL's cache file.

    The URL is hashed with credentials, query and fragment left out, scheme and host in lower
    case, no trailing slash.
    """
    try:
        url = urllib.parse.urlsplit(base_url.strip())
        host = (url.hostname or "").lower()
        port = url.port
    except ValueError:
        return hashlib.sha256(b"unparsable base url").hexdigest()[:32]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    canonical = f"{url.scheme.lower()}://{netloc}{url.path.rstrip('/')}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _File(msgspec.Struct, frozen=True):
    format: str
    key: str
    fetched_at: float
    body: msgspec.Raw


_file_decoder: Final = msgspec.json.Decoder(_File)
_file_encoder: Final = msgspec.json.Encoder()


class _Catalog:
    """One decoded catalogue, when it was fetched, and the checkers compiled from it."""

    __slots__ = ("checkers", "fetched_at", "models", "problems")

    def __init__(
        self, models: Mapping[str, Model], problems: tuple[CatalogProblem, ...], fetched_at: float
    ) -> None:
        self.models = models
        self.problems = problems
        self.fetched_at = fetched_at
        self.checkers: dict[str, Checker] = {}

    def checker(self, model_id: str) -> Checker | None:
        checker = self.checkers.get(model_id)
        if checker is None:
            model = self.models.get(model_id)
            if model is None:
                return None
            checker = self.checkers[model_id] = compile_schema(model_id, model.input_schema)
        return checker


class _Flight:
    """One fetch in progress, awaited by every caller that arrived during it."""

    __slots__ = ("abandoned", "done", "error", "result", "traceback")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: _Catalog | None = None
        self.error: Exception | None = None
        self.traceback: TracebackType | None = None
        #: The fetching task was cancelled (or interrupted): a waiter fetches instead.
        self.abandoned = False


class _Failure:
    __slots__ = ("error", "traceback", "until")

    def __init__(self, error: Exception, traceback: TracebackType | None, until: float) -> None:
        self.error = error
        self.traceback = traceback
        self.until = until


class CatalogCache:
    """The model catalogue, fetched once per ``ttl_s`` and shared (see the module doc).

    Args:
        fetch: Returns the raw body of ``GET /api/v3/models``; raises on failure (the
            error reaches the callers as is).
        base_url: The API base URL the catalogue belongs to (it keys the disk cache; its
            credentials never reach a file).
        ttl_s: How long a catalogue is used before it is fetched again, in seconds.
        cache_dir: The directory of the disk cache; :data:`DEFAULT_CACHE_DIR` for
            :func:`default_cache_dir`, ``None`` for no disk cache.
        clock: Wall-clock seconds (``time.time``); a fake one in tests.
        failure_cooldown_s: For this long after a failed fetch, callers get that failure
            without a new fetch. ``0`` retries at once.
        stale_if_error_s: A catalogue up to this old is used when a refresh fails.
            ``0`` never uses an expired catalogue.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[bytes]],
        *,
        base_url: str,
        ttl_s: float = 3600.0,
        cache_dir: Path | str | _Default | None = DEFAULT_CACHE_DIR,
        clock: Callable[[], float] = time.time,
        failure_cooldown_s: float = 5.0,
        stale_if_error_s: float = 24 * 3600.0,
    ) -> None:
        for name, value in (
            ("ttl_s", ttl_s),
            ("failure_cooldown_s", failure_cooldown_s),
            ("stale_if_error_s", stale_if_error_s),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: {value!r} is not allowed; allowed: seconds, 0 or more")
        self._fetch = fetch
        self._key = cache_key(base_url)
        self._ttl_s = float(ttl_s)
        self._failure_cooldown_s = float(failure_cooldown_s)
        self._stale_if_error_s = float(stale_if_error_s)
        self._clock = clock
        directory = default_cache_dir() if cache_dir is DEFAULT_CACHE_DIR else cache_dir
        self._path = (
            Path(directory) / f"catalog-{self._key}.json"
            if isinstance(directory, (str, Path))
            else None
        )
        self._catalog: _Catalog | None = None
        self._flight: _Flight | None = None
        self._failure: _Failure | None = None
        #: How many fetches this cache started (for tests and diagnostics).
        self.fetches = 0

    @property
    def path(self) -> Path | None:
        """The disk cache file (``None`` when there is no disk cache)."""
        return self._path

    @property
    def problems(self) -> tuple[CatalogProblem, ...]:
        """What was odd in the current catalogue's entries (``()`` before the first load)."""
        return self._catalog.problems if self._catalog is not None else ()

    @property
    def fetched_at(self) -> float | None:
        """When the current catalogue was fetched (wall-clock seconds), or ``None``."""
        return self._catalog.fetched_at if self._catalog is not None else None

    async def models(self) -> Mapping[str, Model]:
        """Every model of the catalogue by id, loaded if needed.

        Raises:
            Exception: What ``fetch`` raised, or :class:`~wavespeed_async.DecodeError` for
                an answer that is not a catalogue, when no usable catalogue is at hand.
        """
        return (await self._current()).models

    async def checker(self, model_id: str) -> Checker | None:
        """The compiled checker of a model's inputs, compiled once per catalogue.

        Returns:
            ``None`` when the catalogue does not list the model. A model without a usable
            schema gets an uncheckable checker (``checker.uncheckable``), which accepts
            anything and says why in ``checker.reason``.

        Raises:
            Exception: As :meth:`models`.
        """
        return (await self._current()).checker(model_id)

    async def refresh(self) -> Mapping[str, Model]:
        """Fetch the catalogue now, whatever its age (callers arriving meanwhile share it)."""
        return (await self._load(force=True)).models

    def invalidate(self) -> None:
        """Forget the catalogue in memory and any remembered failure (the file stays)."""
        self._catalog = None
        self._failure = None

    def __repr__(self) -> str:
        if self._catalog is None:
            state = "empty"
        else:
            age = self._clock() - self._catalog.fetched_at
            state = f"{len(self._catalog.models)} models, {age:.0f} s old"
        disk = "on disk" if self._path is not None else "memory only"
        return f"<CatalogCache {state}, {disk}, key {self._key[:12]}>"

    # -----------------------------------------------------------------------------------

    def _fresh(self) -> _Catalog | None:
        catalog = self._catalog
        if catalog is not None and 0 <= self._clock() - catalog.fetched_at < self._ttl_s:
            return catalog
        return None

    async def _current(self) -> _Catalog:
        catalog = self._fresh()
        return catalog if catalog is not None else await self._load(force=False)

    async def _load(self, *, force: bool) -> _Catalog:
        """The catalogue from memory, disk or the server, one fetch at a time."""
        while True:
            flight = self._flight
            if flight is None:
                if not force:
                    catalog = self._fresh()
                    if catalog is not None:
                        return catalog
                return await self._lead(force=force)
            await flight.done.wait()
            if flight.result is not None:
                return flight.result
            if flight.error is not None:
                raise flight.error.with_traceback(flight.traceback)
            # The fetching task was cancelled: take its place.

    async def _lead(self, *, force: bool) -> _Catalog:
        flight = self._flight = _Flight()
        try:
            catalog = await self._obtain(force=force)
        except Exception as exc:
            flight.error, flight.traceback = exc, exc.__traceback__
            raise
        except BaseException:
            flight.abandoned = True
            raise
        else:
            flight.result = catalog
            return catalog
        finally:
            self._flight = None
            flight.done.set()

    async def _obtain(self, *, force: bool) -> _Catalog:
        now = self._clock()
        failure = self._failure
        if failure is not None and now < failure.until and not force:
            stale = await self._stale(now)
            if stale is not None:
                return stale
            raise failure.error.with_traceback(failure.traceback)
        if not force and self._path is not None:
            on_disk = await anyio.to_thread.run_sync(self._read, self._path, now)
            if on_disk is not None and 0 <= now - on_disk.fetched_at < self._ttl_s:
                self._catalog = on_disk
                return on_disk
        self.fetches += 1
        try:
            body = await self._fetch()
            catalog = await anyio.to_thread.run_sync(self._decode_and_store, body, self._clock())
        except Exception as exc:
            self._failure = _Failure(
                exc, exc.__traceback__, self._clock() + self._failure_cooldown_s
            )
            stale = await self._stale(self._clock())
            if stale is not None:
                log.warning(
                    "the model catalogue could not be fetched (%s); using the one fetched "
                    "%.0f s ago",
                    type(exc).__name__,
                    self._clock() - stale.fetched_at,
                )
                return stale
            raise
        self._failure = None
        self._catalog = catalog
        return catalog

    async def _stale(self, now: float) -> _Catalog | None:
        """The newest catalogue at hand that is young enough to stand in for a fresh one."""
        candidates = [self._catalog] if self._catalog is not None else []
        if self._path is not None:
            on_disk = await anyio.to_thread.run_sync(self._read, self._path, now)
            if on_disk is not None:
                candidates.append(on_disk)
        usable = [c for c in candidates if 0 <= now - c.fetched_at < self._stale_if_error_s]
        if not usable:
            return None
        newest = max(usable, key=lambda c: c.fetched_at)
        if self._catalog is None or newest.fetched_at > self._catalog.fetched_at:
            self._catalog = newest
        return newest

    # File work: runs in a worker thread.

    def _decode_and_store(self, body: bytes, fetched_at: float) -> _Catalog:
        decoded = decode_models(body)  # raises DecodeError: not cached, not written
        if self._path is not None:
            self._write(self._path, body, fetched_at)
        return _Catalog(decoded.by_id(), decoded.problems, fetched_at)

    def _read(self, path: Path, now: float) -> _Catalog | None:
        """The cache file's catalogue, or ``None`` when there is none that can be used."""
        try:
            # Non-blocking, and a regular file only: a FIFO or device planted at the path
            # would otherwise hold the read (and every submit waiting on it) forever.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    log.debug("catalogue cache %s ignored: not a regular file", path)
                    return None
                raw = f.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.debug("catalogue cache %s not readable: %s", path, exc)
            return None

        def ignored(why: str) -> _Catalog | None:
            log.debug("catalogue cache %s ignored: %s", path, why)
            return None

        if len(raw) > _MAX_FILE_BYTES:
            return ignored("too large")
        try:
            file = _file_decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return ignored("not a cache file")
        if file.format != _FORMAT or file.key != self._key:
            return ignored("the file of another cache")
        if not math.isfinite(file.fetched_at) or file.fetched_at > now + _MAX_CLOCK_SKEW_S:
            return ignored("a time stamp from the future")
        try:
            decoded = decode_models(bytes(file.body))
        except DecodeError:
            return ignored("not a catalogue")
        return _Catalog(decoded.by_id(), decoded.problems, file.fetched_at)

    def _write(self, path: Path, body: bytes, fetched_at: float) -> None:
        """Replace the cache file atomically; a failure is logged, never raised."""
        record = _File(_FORMAT, self._key, fetched_at, msgspec.Raw(body))
        temp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".catalog-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(_file_encoder.encode(record))
            os.replace(temp, path)
            temp = None
        except OSError as exc:
            log.debug("catalogue cache %s not written: %s", path, exc)
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
