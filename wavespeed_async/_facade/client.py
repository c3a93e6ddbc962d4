"""The Client: one transport, shared flow control, every wait in one place, typed results."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Final, TypeVar
from urllib.parse import urlsplit

from wavespeed_async._core.errors import (
    AsyncioRequiredError,
    ClientClosedError,
    ValidationError,
)
from wavespeed_async._core.secret import Secret, SigningKey, masked_url, redacted_url
from wavespeed_async._core.settings import (
    CatalogConfig,
    FlowLimits,
    PollConfig,
    RetryConfig,
    SizeLimits,
    Timeouts,
)
from wavespeed_async._facade.catalog import Catalog
from wavespeed_async._facade.endpoints import Endpoints
from wavespeed_async._facade.observing import EventListener, Observing
from wavespeed_async._facade.spend import Spend
from wavespeed_async._facade.tasks import TaskCreatedHook, Tasks
from wavespeed_async._http.base import HTTPTransport
from wavespeed_async._http.media import Downloader, is_private_host
from wavespeed_async._http.transport import AiohttpTransport, check_proxy
from wavespeed_async._runtime.api import Api
from wavespeed_async._runtime.events import Events
from wavespeed_async._runtime.fdlimit import fit_to_file_limit
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.input_check import InputChecks
from wavespeed_async._runtime.share import (
    Share,
    default_namespace,
    resolve_share,
    share_signer,
)
from wavespeed_async._runtime.waits import Waits
from wavespeed_async._version import __version__

__all__ = ["DEFAULT_BASE_URL", "Client", "TaskCreatedHook"]

log = logging.getLogger("wavespeed_async")

DEFAULT_BASE_URL: Final = "https://api.wavespeed.ai"

_S = TypeVar("_S")


def _require_asyncio() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; an ``AsyncioRequiredError`` saying so under any other."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise AsyncioRequiredError(
            "wavespeed-async runs on asyncio only (it is built on aiohttp); no asyncio event "
            "loop is running here. Under anyio, use anyio.run(main) or "
            "anyio.run(main, backend='asyncio'), not the trio backend"
        ) from None


def _url_shape(url: str) -> tuple[bool, bool]:
    """Whether ``url`` is an http(s) URL with a host, and whether it carries credentials.

    Its parts stay in this frame, gone before a caller raises: no traceback shows them.
    """
    parts = urlsplit(url)
    web = parts.scheme in ("http", "https") and bool(parts.netloc)
    return web, parts.username is not None or parts.password is not None


class Client(Catalog, Tasks, Endpoints, Observing, Spend):
    """An async client for the WaveSpeedAI API.

    Use it as ``async with Client() as client:``, or create it once (e.g. in a web app's
    lifespan) and ``await client.aclose()`` at the end. One Client owns one transport
    (a bounded connection pool) and one set of limits (:class:`FlowLimits`) shared by
    every call made through it. A Client belongs to the asyncio event loop it is first
    used on. Its settings are fixed when it is built.

    Args:
        api_key: The API key; default ``$WAVESPEED_API_KEY``. Never shown in a repr, a log
            line or an error.
        base_url: Default ``$WAVESPEED_BASE_URL``, else ``https://api.wavespeed.ai``.
        timeouts: Connect / per-request / whole-task timeouts.
        retry: Retry attempts and backoff.
        poll: Adaptive polling settings.
        limits: In-flight cap, start rate, poll budget, pool size and spending budget,
            shared by all calls.
        on_task_created: Called (sync or async) with each created Prediction the moment its
            id exists, before polling: persist ids here so no task is ever lost.
        headers: Extra headers for API requests.
        sizes: Caps on API answer and downloaded output sizes.
        allow_private_media: Let :meth:`download` fetch outputs from, and :meth:`upload`
            send files to, loopback, private and link-local addresses. Off by default (a
            URL from the server could point at a cloud metadata service), and on by itself
            when ``base_url``'s host is such an address (a local emulator).
        seed: Seeds the retry jitter (for reproducible tests).
        share: Share the limits and webhook wake-ups with every other process of the
            account: a URL whose scheme an installed backend serves (``redis://``, with
            the ``redis`` extra), or a backend object such as
            ``wavespeed_async.redis.RedisShare``. ``None``: the limits hold within this
            Client only.
        transport: Sends every API request (see :class:`HTTPTransport`): default an
            :class:`AiohttpTransport` with ``limits.max_connections`` connections. The
            Client closes it when it closes.
        proxy: An ``http://[user:password@]host:port`` proxy for API requests, uploads
            and downloads (its password is never shown).
        trust_env: Take proxies from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``.
        on_event: Called synchronously with every :class:`Event` (a task created, a new
            status, a retry, a cool-down, an end, ...): keep it quick; it may not await.
            An exception from it is logged once and changes nothing else. More
            listeners: :meth:`add_event_listener`; as an async iterator: :meth:`events`.
        catalog: How every input is checked against the model catalogue before it is
            sent (:class:`CatalogConfig`: on by default, failing open; ``"strict"``;
            ``"off"``).

    Raises:
        ValidationError: no API key was given or found in the environment, or a setting is
            out of range.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryConfig | None = None,
        poll: PollConfig | None = None,
        limits: FlowLimits | None = None,
        on_task_created: TaskCreatedHook | None = None,
        headers: Mapping[str, str] | None = None,
        sizes: SizeLimits | None = None,
        allow_private_media: bool | None = None,
        seed: int | None = None,
        share: str | Share | None = None,
        transport: HTTPTransport | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        on_event: EventListener | None = None,
        catalog: CatalogConfig | None = None,
    ) -> None:
        if isinstance(share, str):
            share = masked_url(share)  # no traceback's locals show its password
        raw = api_key if api_key is not None else os.environ.get("WAVESPEED_API_KEY", "")
        # Held masked from here on: no traceback's locals can show it.
        key, raw, api_key = Secret(raw.strip()), "", None
        if not key:
            raise ValidationError(
                "api_key",
                "api_key: no API key; pass Client(api_key=...) or set WAVESPEED_API_KEY "
                "(the built-in emulator accepts any non-empty key; point "
                "WAVESPEED_BASE_URL at it too)",
            )
        proxy = check_proxy(proxy)  # masked: no traceback's locals show its password
        # Masked at once: a traceback's locals show neither URL's password.
        url = base_url = masked_url(
            base_url or os.environ.get("WAVESPEED_BASE_URL") or DEFAULT_BASE_URL
        )
        web, credentials = _url_shape(url)
        if not web:
            raise ValidationError(
                "base_url",
                f"base_url: {redacted_url(url)!r} is not allowed; allowed: an http(s) URL",
            )
        if credentials:
            raise ValidationError(
                "base_url",
                f"base_url: {redacted_url(url)!r} carries a user name or password, which is "
                "not allowed (the API key is the credential; a proxy's go in proxy=); "
                "allowed: http(s)://host[:port][/path]",
            )
        self.base_url = url.rstrip("/")
        self._key = key
        self._timeouts = _setting("timeouts", timeouts, Timeouts)
        self._sizes = _setting("sizes", sizes, SizeLimits)
        self._retry = _setting("retry", retry, RetryConfig)
        self._poll = _setting("poll", poll, PollConfig)
        self._limits = _setting("limits", limits, FlowLimits)
        self._catalog_config = _setting("catalog", catalog, CatalogConfig)
        self._input_checks: InputChecks | None = None
        if allow_private_media is None:
            allow_private_media = is_private_host(urlsplit(self.base_url).hostname or "")
        self._allow_private_media = bool(allow_private_media)
        if transport is not None and (proxy is not None or trust_env):
            raise ValidationError(
                "proxy",
                "proxy/trust_env: they configure the default transport; with transport=, "
                "give them to it (AiohttpTransport(proxy=..., trust_env=...))",
            )
        if transport is not None and not isinstance(transport, HTTPTransport):
            raise ValidationError(
                "transport",
                f"transport: {type(transport).__name__} has no send()/aclose(); allowed: "
                "an object implementing wavespeed_async.HTTPTransport",
            )
        self._given_transport = transport
        self._proxy = proxy
        self._trust_env = bool(trust_env)
        if on_event is not None and not callable(on_event):
            raise ValidationError(
                "on_event", f"on_event: {type(on_event).__name__}; allowed: a callable or None"
            )
        self._events = Events()
        if on_event is not None:
            self._events.add_listener(on_event)
        self.on_task_created = on_task_created
        self._extra_headers = {
            "User-Agent": f"wavespeed-async/{__version__}",
            "X-Client-Name": "wavespeed-async",
            "X-Client-Version": __version__,
            "X-Client-OS": platform.system().lower() or "unknown",
            **(headers or {}),
        }
        self._rng = random.Random(seed)
        self._share = resolve_share(share)
        share = None  # a URL's password stays only inside the share
        self._namespace = default_namespace(key, self.base_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: Api | None = None
        self._waits: Waits | None = None
        self._flow: FlowControl | None = None
        self._downloader: Downloader | None = None
        self._closed = False
        self._polls_closed = 0  # polls answered, by the Api, once closed
        self._deliveries_closed = 0
        self.tasks_created = 0

    # -- settings: fixed when the Client is built ---------------------------------------

    @property
    def timeouts(self) -> Timeouts:
        """Connect / per-request / whole-task timeouts."""
        return self._timeouts

    @property
    def sizes(self) -> SizeLimits:
        """Caps on answer and download sizes."""
        return self._sizes

    @property
    def retry(self) -> RetryConfig:
        """Retry attempts and backoff."""
        return self._retry

    @property
    def poll(self) -> PollConfig:
        """Adaptive polling settings."""
        return self._poll

    @property
    def limits(self) -> FlowLimits:
        """The limits shared by every call (as fitted to the open-file limit once open)."""
        return self._limits

    @property
    def account_fingerprint(self) -> str:
        """A short hash of the API key and base URL that names this account on this API.

        Never the key itself: it is what a share's default namespace and a ledger's entries
        record, so that two accounts never take each other's results.
        """
        return self._namespace

    def signing_key(self, label: str) -> SigningKey:
        """A key derived from the API key for ``label`` (an HMAC of the label keyed by it).

        The processes of this account, and only they, can sign with it, to authenticate
        what they store in shared places. Its repr is masked; it reveals nothing of the
        API key.
        """
        return self._key.signing_key(label)

    @property
    def allow_private_media(self) -> bool:
        """Whether :meth:`download` and :meth:`upload` may reach internal addresses."""
        return self._allow_private_media

    # -- lifecycle ---------------------------------------------------------------------

    def __repr__(self) -> str:
        if "tasks_created" not in vars(self):  # __init__ raised (a traceback shows self)
            return "<Client (not constructed)>"
        state = "closed" if self._closed else ("open" if self._api else "not opened")
        flow = self._flow
        in_flight = int(flow.in_flight.borrowed_tokens) if flow else 0
        return (
            f"<Client {self.base_url} {state} tasks_created={self.tasks_created} "
            f"in_flight={in_flight} polls_sent={self.polls_sent}>"
        )

    async def __aenter__(self) -> Client:
        self._open()
        if self._share is not None:
            try:
                await self._share.start()  # fail early (ConnectError) if the share is down
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport and pools. Idempotent; the Client cannot be used afterwards."""
        self._closed = True
        waits, self._waits = self._waits, None
        if waits is not None:
            self._deliveries_closed += waits.deliveries
            # Pending waits end with ClientClosedError; polls in flight are cancelled.
            cancelled = waits.close()
            if cancelled:
                await asyncio.gather(*cancelled, return_exceptions=True)
        api, self._api = self._api, None
        downloader, self._downloader = self._downloader, None
        if api is not None:
            self._polls_closed += api.polls_answered
            api.close()  # the polls' deadline timer: no poll is in flight any more
        if self._share is not None:
            await self._share.aclose()
        if api is not None:
            await api.transport.aclose()
        elif self._given_transport is not None:
            await self._given_transport.aclose()
        if downloader is not None:
            await downloader.aclose()
        self._events.close()  # streams end after what they hold

    @property
    def polls_sent(self) -> int:
        """Polls of :meth:`wait` that got their task's state.

        The submit's answer and webhook deliveries are not counted.
        """
        api = self._api
        return self._polls_closed + (api.polls_answered if api else 0)

    @property
    def deliveries(self) -> int:
        """Webhook deliveries that ended, or will end, a wait of this Client."""
        return self._deliveries_closed + (self._waits.deliveries if self._waits else 0)

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _open(self) -> Api:
        """The API caller for the running loop, opening the Client on first use."""
        loop = _require_asyncio()
        api = self._api
        if api is not None and self._loop is loop:
            return api
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        if self._loop is not None and self._loop is not loop:
            raise ClientClosedError(
                "this Client belongs to another event loop; create one Client per event loop "
                "(for example in your app's lifespan), not at import time"
            )
        held = 0 if self._share is None else self._share.connections
        self._limits = fit_to_file_limit(self._limits, reserved=held)
        self._loop = loop
        events = self._events
        events.bind_clock(loop.time)
        flow = self._flow = FlowControl(self._limits, clock=loop.time, share=self._share)
        headers = {"Authorization": self._key.auth_header(), **self._extra_headers}
        transport = self._given_transport or AiohttpTransport(
            max_connections=self._limits.max_connections,
            proxy=self._proxy,
            trust_env=self._trust_env,
            headers=headers,
        )
        api = self._api = Api(
            transport,
            base_url=self.base_url,
            headers=headers,
            timeouts=self._timeouts,
            sizes=self._sizes,
            retry=self._retry,
            flow=flow,
            rng=self._rng,
            events=events,
        )
        waits = self._waits = Waits(
            loop,
            poll=api.poll,
            poll_request=api.poll_request,
            config=self._poll,
            flow=flow,
            share=self._share,
            events=events,
        )
        if self._share is not None:

            def on_cooldown(seconds: float) -> None:
                started = flow.cooldowns_started
                flow.note_cooldown(seconds)
                if flow.cooldowns_started != started and events.active:
                    events.cooldown(seconds, remote=True)

            self._share.bind(
                self._limits,
                namespace=self._namespace,
                clock=loop.time,
                on_delivery=waits.deliver_remote,
                on_cooldown=on_cooldown,
                signer=share_signer(self._key),
                max_cooldown_s=self._retry.max_retry_after_s,
            )
        return api

    @property
    def flow(self) -> FlowControl:
        """The flow control shared by every call on this Client."""
        self._open()
        if self._flow is None:  # pragma: no cover - _open() always sets it
            raise ClientClosedError("this Client is closed")
        return self._flow

    def _waiting(self) -> Waits:
        self._open()
        if self._waits is None:  # pragma: no cover - _open() always sets it
            raise ClientClosedError("this Client is closed")
        return self._waits


def _setting(name: str, value: _S | None, kind: type[_S]) -> _S:
    """``value`` (default ``kind()``), a ``ValidationError`` naming ``name`` if not a ``kind``."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise ValidationError(
            name, f"{name}: a {kind.__name__}, not {type(value).__name__}", allowed=kind.__name__
        )
    return value
