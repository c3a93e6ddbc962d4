"""Every setting of a Client, in one place: timeouts, sizes, retries, polling, limits, tiers.

Every object here is immutable and checks its fields when built, so that a bad setting
fails at construction (with a :class:`~wavespeed_async.ValidationError` naming the field
and the allowed range) instead of deep inside a request. One naming scheme: units are
suffixes (``_s`` seconds, ``_bytes``), caps start with ``max_``, rates end in
``_per_s`` / ``_per_minute``. A Client takes its settings when it is built and never
changes them; derive another with :func:`dataclasses.replace`::

    fast = dataclasses.replace(PollConfig(), min_interval_s=0.05)

Names from earlier versions are still accepted (with a ``DeprecationWarning``) and read.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.money import split_usd, usd_amount

__all__ = [
    "TIERS",
    "TIERS_ALTERNATE",
    "AccountTier",
    "CatalogConfig",
    "FlowLimits",
    "InputCheckMode",
    "PollConfig",
    "RetryConfig",
    "ScheduleTuning",
    "SizeLimits",
    "TierLimits",
    "Timeouts",
]

_C = TypeVar("_C", bound=type)


def _renamed(renames: Mapping[str, str], *, into: str | None = None) -> Callable[[_C], _C]:
    """Accept (and read) each old field name of ``renames`` as its new one, with a warning.

    With ``into``, the new names are fields of the settings object held in the field
    ``into`` (the :class:`ScheduleTuning` of a :class:`PollConfig`), replaced there.
    """

    def wrap(cls: _C) -> _C:
        init: Callable[..., None] = cls.__init__  # type: ignore[misc]

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            moved: dict[str, Any] = {}
            for old in sorted(renames.keys() & kwargs.keys()):
                new = renames[old] if into is None else f"{into}.{renames[old]}"
                warnings.warn(
                    f"{cls.__name__}({old}=...) is now {new}; the old name will be removed",
                    DeprecationWarning,
                    stacklevel=2,
                )
                moved[renames[old]] = kwargs.pop(old)
            if into is not None and moved:
                base = kwargs.get(into) or _DEFAULTS[into]
                kwargs[into] = dataclasses.replace(base, **moved)
            else:
                kwargs.update(moved)
            init(self, *args, **kwargs)

        __init__.__doc__ = init.__doc__
        cls.__init__ = __init__  # type: ignore[misc]
        for old, new in renames.items():
            setattr(cls, old, _alias(new if into is None else f"{into}.{new}"))
        return cls

    return wrap


def _alias(path: str) -> property:
    """A read-only attribute that reads the dotted ``path`` of its object."""

    def read(self: object) -> Any:
        value: Any = self
        for name in path.split("."):
            value = getattr(value, name)
        return value

    return property(read, doc=f"The old name of ``{path}``.")


def _check_number(
    owner: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """Raise ValidationError unless ``owner.name`` is a finite number in the range.

    ``low_open`` makes the lower bound exclusive (``> low`` rather than ``>= low``).
    """
    value = getattr(owner, name)
    cls = type(owner).__name__
    allowed = _describe(low, high, low_open=low_open, integer=integer, optional=optional)
    if value is None and optional:
        return
    kind_ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not kind_ok:
        raise ValidationError(
            name,
            f"{cls}.{name}: expected {allowed}, got {type(value).__name__} {value!r:.40}",
            allowed=allowed,
        )
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if not math.isfinite(value) or too_low or too_high:
        raise ValidationError(
            name, f"{cls}.{name}: {value!r} is out of range; allowed: {allowed}", allowed=allowed
        )


def _describe(
    low: float | None, high: float | None, *, low_open: bool, integer: bool, optional: bool
) -> str:
    what = "an integer" if integer else "a number"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    text = f"{what} {' and '.join(parts)}" if parts else what
    return f"{text}, or None" if optional else text


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """How long each kind of wait may take, in seconds.

    Attributes:
        connect_s: Opening a connection (DNS, TCP, TLS). A connect timeout is always safe
            to retry, even for a submit: the request never left.
        request_s: One API request's answer, headers and whole body, counted from when its
            connection is ready: a total deadline that a server trickling bytes cannot
            extend. Waiting for a pooled connection and connecting have a budget of the
            same length before it (a timeout there proves the request never left, so even
            a submit is re-sent), so one attempt ends within ``2 * request_s``. A GET (a
            poll) is retried alike whatever phase timed out, so its whole attempt, waiting
            for a connection included, has the one deadline of ``request_s``.
        sync_request_s: A submit with ``enable_sync_mode``: the server holds the request
            open for about 90 s, so this must be longer than that.
        download_s: Fetching one output file, from the start of its request (waiting for
            a pooled connection included) to its last byte.
        upload_s: Sending one file to the storage host an upload ticket names, from the
            start of its request to the end of the host's answer.
        task_s: The whole-task deadline of ``wait()``/``run()``, from submit to a terminal
            status; ``None`` waits forever. When it passes the task keeps running on the
            server (and is billed): ``TaskTimeoutError.task_id`` lets you resume.
    """

    connect_s: float = 10.0
    request_s: float = 60.0
    sync_request_s: float = 120.0
    download_s: float = 300.0
    upload_s: float = 300.0
    task_s: float | None = 1800.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "request_s", "sync_request_s", "download_s", "upload_s"):
            _check_number(self, name, low=0.0, low_open=True)
        _check_number(self, "task_s", low=0.0, low_open=True, optional=True)


#: One mebibyte, in bytes.
MIB: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeLimits:
    """How much the client reads from the network, in bytes.

    Attributes:
        max_answer_bytes: The largest API answer read (after decompression). A larger one
            is refused as a :class:`~wavespeed_async.DecodeError` as soon as it passes the
            cap, never buffered whole; a task answer is a few kilobytes.
        max_download_bytes: The largest output file :meth:`Client.download` saves. A
            larger one is refused with :class:`~wavespeed_async.OutputRefusedError` and
            leaves no file behind.
        max_outputs: The most outputs of one task :meth:`Client.download` saves (the
            Kontext models make at most 4). A task with more is refused with
            :class:`~wavespeed_async.OutputRefusedError` before any is fetched, so a server
            cannot fill the disk one capped file at a time.
    """

    max_answer_bytes: int = 8 * MIB
    max_download_bytes: int = 64 * MIB
    max_outputs: int = 64

    def __post_init__(self) -> None:
        _check_number(self, "max_answer_bytes", low=1024, high=1 << 40, integer=True)
        _check_number(self, "max_download_bytes", low=1, high=1 << 40, integer=True)
        _check_number(self, "max_outputs", low=1, high=1 << 20, integer=True)


@_renamed(
    {
        "submit_max_attempts": "max_submit_attempts",
        "backoff_max_s": "max_backoff_s",
        "retry_after_cap_s": "max_retry_after_s",
    }
)
@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """When and how fast failed requests are tried again.

    GETs are idempotent and are retried on any transient failure. A submit (POST) is
    re-sent only when it provably created no task (see ``policy.decide_submit_retry``):
    the API has no idempotency key, so a blind re-send can bill twice.

    Attributes:
        max_attempts: Attempts of an idempotent GET, the first included (1 = no retry).
        max_submit_attempts: Attempts of a submit, the first included; re-sends happen
            only when provably safe.
        backoff_base_s: The cap of the first retry's jittered delay; doubles per attempt.
        max_backoff_s: The largest cap of a jittered backoff delay.
        max_retry_after_s: A server's ``Retry-After`` longer than this is clamped to it.
    """

    max_attempts: int = 6
    max_submit_attempts: int = 6
    backoff_base_s: float = 0.25
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        _check_number(self, "max_attempts", low=1, high=100, integer=True)
        _check_number(self, "max_submit_attempts", low=1, high=100, integer=True)
        _check_number(self, "backoff_base_s", low=0.0, high=3600.0)
        _check_number(self, "max_backoff_s", low=self.backoff_base_s, high=3600.0)
        _check_number(self, "max_retry_after_s", low=0.0, high=86400.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTuning:
    """The adaptive poll schedule's shape: for experiments, not for everyday use.

    Attributes:
        first_poll_fraction: The first poll is at the duration by which this fraction of
            the model's tasks have finished (a low quantile: 0.05 = the 5th percentile).
        tail_quantile: Past this quantile of the learned durations a task is "late": the
            distribution says little about it, so the tail rule takes over.
        tail_interval_fraction: In the tail, the interval is this fraction of the time
            elapsed since submit (detection within ~10% of the task's own time, with
            geometrically growing intervals), capped by ``max_interval_s``.
        created_wait_fraction: A poll after the first that still says ``created`` means
            the task has not started (it is queued); wait at least this fraction of the
            first-poll time before polling it again.
        prior_spread: Log-space standard deviation of the prior duration distribution
            (0.4: the 5th..95th percentiles are about 0.5x..1.9x the median).
        estimator_window: How many recent durations per model the estimator keeps at
            least; it keeps more while more tasks are in flight (up to 16,384), so that
            tasks started together, which end in waves, teach it a whole wave.
    """

    first_poll_fraction: float = 0.1
    tail_quantile: float = 0.95
    tail_interval_fraction: float = 0.1
    created_wait_fraction: float = 0.5
    prior_spread: float = 0.4
    estimator_window: int = 256

    def __post_init__(self) -> None:
        _check_number(self, "first_poll_fraction", low=0.0, high=0.5)
        _check_number(self, "tail_quantile", low=0.5, high=1.0)
        _check_number(self, "tail_interval_fraction", low=0.0, low_open=True, high=1.0)
        _check_number(self, "created_wait_fraction", low=0.0, high=1.0)
        _check_number(self, "prior_spread", low=0.01, high=3.0)
        _check_number(self, "estimator_window", low=8, high=100_000, integer=True)


_DEFAULTS: Final[Mapping[str, Any]] = {"tuning": ScheduleTuning()}


@_renamed({f.name: f.name for f in fields(ScheduleTuning)}, into="tuning")
@dataclass(frozen=True, slots=True, kw_only=True)
class PollConfig:
    """How often a running task is polled: an adaptive schedule learned per model.

    The client learns each model's distribution of submit-to-done durations and polls
    where completions are likely: no poll before the first plausible completion, polls
    dense where tasks are likely to finish and sparse elsewhere, and intervals growing
    with the elapsed time for a late task.

    WaveSpeed's docs ask clients to poll image tasks no more often than every 2 s (video
    every 5 s); the defaults here poll faster only around likely completions. Set
    ``min_interval_s=2.0`` to follow the docs to the letter.

    Attributes:
        expected_duration_s: Prior median of a model's submit-to-done time, used until
            a few tasks of that model have been observed.
        min_interval_s: Never poll one task more often than this.
        max_interval_s: Nor less often than this, except for the wait before the first
            plausible completion (which may be longer when the model is known to be slow).
        poll_cost_s: How many seconds of detection latency one poll is worth: smaller
            means more polls and faster detection.
        webhook_fallback_s: For a task submitted with a webhook, the interval of the
            fallback polls that catch a delivery that never comes.
        tuning: The schedule's shape (:class:`ScheduleTuning`); rarely worth changing.
    """

    expected_duration_s: float = 3.0
    min_interval_s: float = 0.1
    max_interval_s: float = 5.0
    poll_cost_s: float = 0.05
    webhook_fallback_s: float = 10.0
    tuning: ScheduleTuning = field(default_factory=ScheduleTuning, repr=False)

    def __post_init__(self) -> None:
        _check_number(self, "expected_duration_s", low=0.0, low_open=True, high=86400.0)
        _check_number(self, "min_interval_s", low=0.0, low_open=True, high=3600.0)
        _check_number(self, "max_interval_s", low=self.min_interval_s, high=3600.0)
        _check_number(self, "poll_cost_s", low=0.0, low_open=True, high=60.0)
        _check_number(self, "webhook_fallback_s", low=0.0, low_open=True, high=3600.0)
        if not isinstance(self.tuning, ScheduleTuning):
            raise ValidationError(
                "tuning",
                f"PollConfig.tuning: a ScheduleTuning, not {type(self.tuning).__name__}",
                allowed="ScheduleTuning",
            )


#: The account tiers WaveSpeed documents.
AccountTier = Literal["bronze", "silver", "gold", "ultra"]


@_renamed({"tasks_per_minute": "max_tasks_per_minute"})
@dataclass(frozen=True, slots=True, kw_only=True)
class TierLimits:
    """An account tier's limits.

    Attributes:
        max_tasks_per_minute: Generations that may be started per minute (over it: 429).
        max_running: Tasks that may run at once (over it, a task waits on the server,
            sitting in ``created``).
    """

    max_tasks_per_minute: int
    max_running: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_number(self, f.name, low=1, integer=True)


#: Tier limits as the first version of WaveSpeed's docs lists them. Two versions of the
#: docs disagree; the other one's figures are in :data:`TIERS_ALTERNATE`. Nothing here was
#: checked against the live service: treat these as starting points for client-side limits.
TIERS: Final[Mapping[str, TierLimits]] = MappingProxyType(
    {
        "bronze": TierLimits(max_tasks_per_minute=2, max_running=2),
        "silver": TierLimits(max_tasks_per_minute=500, max_running=300),
        "gold": TierLimits(max_tasks_per_minute=3000, max_running=3000),
        "ultra": TierLimits(max_tasks_per_minute=5000, max_running=10000),
    }
)

#: The other version of the docs: Bronze 10/min and 3 running; for Silver, Gold and Ultra
#: it gives one different figure each (100, 2,000, 5,000), read here as the running limit.
TIERS_ALTERNATE: Final[Mapping[str, TierLimits]] = MappingProxyType(
    {
        "bronze": TierLimits(max_tasks_per_minute=10, max_running=3),
        "silver": TierLimits(max_tasks_per_minute=500, max_running=100),
        "gold": TierLimits(max_tasks_per_minute=3000, max_running=2000),
        "ultra": TierLimits(max_tasks_per_minute=5000, max_running=5000),
    }
)


@_renamed({"tasks_per_minute": "max_tasks_per_minute"})
@dataclass(frozen=True, slots=True, kw_only=True)
class FlowLimits:
    """Limits shared by every call on one Client.

    Attributes:
        max_in_flight: Tasks submitted and not yet terminal, at most (``run`` and
            ``run_many`` wait for a slot). ``None``: no cap.
        max_tasks_per_minute: Tasks started in any 60 s window, at most. ``None``: no limit.
        max_polls_per_s: Result GETs per second across all tasks, at most. ``None``: no
            budget.
        max_connections: Open HTTP connections to the API, at most (the pool size).
        budget_usd: USD that tasks submitted through the Client may commit, at most (a
            ``Decimal``; an int, a str or a float is taken as written): a submit whose
            quote would take the committed spend over it raises ``BudgetExceeded`` and is
            never sent. With a ``share``, account-wide. ``None``: no budget.
    """

    max_in_flight: int | None = 256
    max_tasks_per_minute: int | None = None
    max_polls_per_s: float | None = 500.0
    max_connections: int = 100
    budget_usd: Decimal | float | str | None = None

    def __post_init__(self) -> None:
        if self.budget_usd is not None:
            object.__setattr__(self, "budget_usd", usd_amount(self.budget_usd, "budget_usd"))
        for name in ("max_in_flight", "max_tasks_per_minute"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValidationError(
                    name, f"{name}: {value!r} is not allowed; allowed: an integer >= 1 or None"
                )
        if self.max_polls_per_s is not None and not self.max_polls_per_s > 0:
            raise ValidationError(
                "max_polls_per_s",
                f"max_polls_per_s: {self.max_polls_per_s!r} is not allowed; "
                "allowed: a number > 0 or None",
            )
        if not isinstance(self.max_connections, int) or self.max_connections < 1:
            raise ValidationError(
                "max_connections",
                f"max_connections: {self.max_connections!r} is not allowed; "
                "allowed: an integer >= 1",
            )

    @classmethod
    def for_tier(cls, tier: str, **overrides: object) -> FlowLimits:
        """Limits that match a WaveSpeed account tier (``bronze``, ``silver``, ...).

        The start rate and the in-flight cap follow the tier's published limits (see
        ``wavespeed_async.TIERS``); ``overrides`` replace any field.
        """
        try:
            t = TIERS[tier.lower()]
        except KeyError:
            raise ValidationError(
                "tier", f"tier: {tier!r} is not known; allowed: one of {', '.join(TIERS)}"
            ) from None
        fields: dict[str, object] = {
            "max_tasks_per_minute": t.max_tasks_per_minute,
            "max_in_flight": t.max_running,
        }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]

    def split(self, n: int) -> FlowLimits:
        """One of ``n`` equal shares of these limits, for ``n`` processes on one account.

        The in-flight cap, the start rate, the poll budget and the pool size are divided
        by ``n`` (rounded down, at least 1 each; ``budget_usd`` rounded down to the
        micro-dollar), so that ``n`` Clients with these
        limits together stay within the original ones. With ``n`` above a cap, each share
        keeps 1 and the sum exceeds the cap: share limits through Redis instead.

        Raises:
            ValidationError: ``n`` is not an integer >= 1.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValidationError("n", f"n: {n!r} is not allowed; allowed: an integer >= 1")
        return FlowLimits(
            max_in_flight=None if self.max_in_flight is None else max(1, self.max_in_flight // n),
            max_tasks_per_minute=(
                None
                if self.max_tasks_per_minute is None
                else max(1, self.max_tasks_per_minute // n)
            ),
            max_polls_per_s=None if self.max_polls_per_s is None else self.max_polls_per_s / n,
            max_connections=max(1, self.max_connections // n),
            budget_usd=(
                None
                if self.budget_usd is None
                else split_usd(usd_amount(self.budget_usd, "budget_usd"), n)
            ),
        )


#: What :attr:`CatalogConfig.check` accepts.
InputCheckMode = Literal["on", "off", "strict"]
_CHECK_MODES: Final = ("on", "off", "strict")


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogConfig:
    """How inputs are checked against the model catalogue before a task is sent.

    The API drops input keys a model does not take and bills the task with its defaults,
    so every submit is checked against the model's schema from ``GET /api/v3/models``
    first (see ``docs/input-checking.md``). The catalogue is fetched once per ``ttl_s``
    and shared by every call of the Client, and through a file by other processes.

    Attributes:
        check: ``"on"``: a model the catalogue describes is checked, and an input it
            refuses is a ``ValidationError`` before anything is sent; a model it does not
            describe, a schema the checker does not understand, or a catalogue that cannot
            be fetched lets the input go unchecked, with one warning logged per model and
            reason. ``"strict"``: such inputs are refused instead. ``"off"``: submits
            fetch no catalogue (``Client.models()`` still does). The FLUX.1 Kontext
            models' built-in specs check their inputs whenever the catalogue does not
            (off, or not at hand).
        ttl_s: How long a fetched catalogue is used before it is fetched again.
        fetch_timeout_s: The longest a submit waits for the catalogue, retries included.
        retry_after_s: After a fetch failed, how long inputs go without the catalogue
            before it is fetched again (a submit then waits for that fetch).
        stale_if_error_s: When a refresh fails, a catalogue up to this old is used.
        cache_dir: The folder of the catalogue file shared with other processes;
            ``None``: the user's cache directory (``$XDG_CACHE_HOME/wavespeed-async``,
            else ``~/.cache/wavespeed-async``), or no file at all when the API's host is a
            loopback, private or ``.invalid`` address (an emulator, whose catalogue
            changes with its configuration).
        disk_cache: ``False``: keep the catalogue in memory only.
    """

    check: InputCheckMode = "on"
    ttl_s: float = 3600.0
    fetch_timeout_s: float = 10.0
    retry_after_s: float = 30.0
    stale_if_error_s: float = 86400.0
    cache_dir: str | os.PathLike[str] | None = None
    disk_cache: bool = True

    def __post_init__(self) -> None:
        if self.check not in _CHECK_MODES:
            allowed = "one of " + ", ".join(repr(m) for m in _CHECK_MODES)
            raise ValidationError(
                "check",
                f"CatalogConfig.check: {self.check!r:.40} is not allowed; allowed: {allowed}",
                allowed=allowed,
            )
        _check_number(self, "ttl_s", low=0.0, high=30 * 86400.0)
        _check_number(self, "fetch_timeout_s", low=0.0, low_open=True, high=3600.0)
        _check_number(self, "retry_after_s", low=0.0, high=86400.0)
        _check_number(self, "stale_if_error_s", low=0.0, high=30 * 86400.0)
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ValidationError(
                "cache_dir",
                f"CatalogConfig.cache_dir: a {type(self.cache_dir).__name__} is not allowed; "
                "allowed: a folder path, or None",
                allowed="a folder path, or None",
            )
        if not isinstance(self.disk_cache, bool):
            raise ValidationError(
                "disk_cache",
                f"CatalogConfig.disk_cache: {self.disk_cache!r:.40} is not allowed; "
                "allowed: True or False",
                allowed="True or False",
            )
