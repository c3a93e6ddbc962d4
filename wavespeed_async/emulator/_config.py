"""Configuration of the emulator: clocks, latencies, fault rates, limits, money."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, Protocol

from wavespeed_async._core.settings import TIERS as CLIENT_TIERS
from wavespeed_async._core.settings import TIERS_ALTERNATE
from wavespeed_async.emulator._billing import to_money
from wavespeed_async.emulator._catalogue import EmulatedModel

__all__ = [
    "FAULT_KINDS",
    "TIERS",
    "Clock",
    "EmulatorConfig",
    "FaultRates",
    "LatencyDist",
    "LatencyProfile",
    "Limits",
    "ManualClock",
    "RealClock",
]

#: Fault kinds as stats report them (phase "before"/"after" on submits, "poll" on GETs).
FAULT_KINDS: Final = ("rate_limit", "server_error", "reset", "malformed", "stall")

#: Tier presets ``(submits_per_minute, max_running)``: the first-listed figures of the API
#: notes, then the figures of the other version of the docs. The client's own table
#: (``wavespeed_async.TIERS``, ``FlowLimits.for_tier``), so both sides agree on a tier.
TIERS: Final[Mapping[str, tuple[tuple[int, int], tuple[int, int]]]] = MappingProxyType(
    {
        name: (
            (tier.max_tasks_per_minute, tier.max_running),
            (TIERS_ALTERNATE[name].max_tasks_per_minute, TIERS_ALTERNATE[name].max_running),
        )
        for name, tier in CLIENT_TIERS.items()
    }
)


class Clock(Protocol):
    """Monotonic seconds as the emulator sees them."""

    def now(self) -> float: ...


class RealClock:
    """The wall clock (``time.monotonic``)."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to: tests step it with ``await emu.advance(s)``."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        """The current time in seconds (it starts at ``start``)."""
        return self._t

    def advance(self, seconds: float) -> None:
        """Move time forward. Prefer ``Emulator.advance``, which also runs what became due."""
        if seconds < 0:
            raise ValueError(f"seconds: {seconds} is negative; allowed: >= 0")
        self._t += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self._t})"


@dataclass(frozen=True)
class FaultRates:
    """Probabilities (0..1 each, summing to at most 1) of faults injected on requests.

    On submits, ``*_before`` faults answer before any task exists and ``*_after`` faults
    after the task was created (so a re-send would create a second, billed task);
    ``rate_limit`` is always before and ``malformed`` always after. On polls the phase does
    not matter: ``reset_before`` and ``reset_after`` both mean "reset the poll".
    """

    rate_limit: float = 0.0
    server_error_before: float = 0.0
    server_error_after: float = 0.0
    reset_before: float = 0.0
    reset_after: float = 0.0
    malformed: float = 0.0
    stall_before: float = 0.0
    stall_after: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{f.name}: {value!r} is not a probability; allowed: 0 ~ 1")
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {total:g}; allowed: at most 1")

    def items(self) -> tuple[tuple[str, float], ...]:
        """``(name, rate)`` pairs in a fixed order (the order faults are drawn in)."""
        return tuple((f.name, float(getattr(self, f.name))) for f in fields(self))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fault field names, in draw order (``rate_limit``, ``server_error_before``...)."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Limits:
    """Account limits: generations started per minute (sliding 60 s) and tasks running."""

    submits_per_minute: int | None = None
    max_running: int | None = None

    def __post_init__(self) -> None:
        for name in ("submits_per_minute", "max_running"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: {value!r}; allowed: None or an integer >= 1")

    @classmethod
    def tier(cls, name: str, *, variant: Literal["first", "second"] = "first") -> Limits:
        """A tier preset: ``bronze``, ``silver``, ``gold`` or ``ultra``.

        The two versions of WaveSpeed's docs disagree; ``variant="first"`` takes the
        first-listed figures (bronze 2/min & 2 running), ``"second"`` the others.
        """
        try:
            first, second = TIERS[name.lower()]
        except KeyError:
            raise ValueError(
                f"tier: {name!r} is unknown; allowed: one of {', '.join(TIERS)}"
            ) from None
        per_minute, running = first if variant == "first" else second
        return cls(submits_per_minute=per_minute, max_running=running)


@dataclass(frozen=True)
class LatencyDist:
    """Durations of one model in milliseconds: triangular ``(low, mode, high)`` each.

    ``queue_ms`` is the time spent in ``created`` (when a running slot is free),
    ``inference_ms`` the time in ``processing`` (reported as ``timings.inference``).
    """

    queue_ms: tuple[float, float, float]
    inference_ms: tuple[float, float, float]

    def __post_init__(self) -> None:
        for name in ("queue_ms", "inference_ms"):
            lo, mode, hi = getattr(self, name)
            if not (0 <= lo <= mode <= hi and math.isfinite(hi)):
                raise ValueError(f"{name}: {(lo, mode, hi)}; allowed: 0 <= low <= mode <= high")

    def draw(self, rng: random.Random) -> tuple[float, float]:
        """``(queue_s, inference_s)``; always draws exactly two numbers."""
        q = rng.triangular(self.queue_ms[0], self.queue_ms[2], self.queue_ms[1])
        i = rng.triangular(self.inference_ms[0], self.inference_ms[2], self.inference_ms[1])
        return q / 1000.0, i / 1000.0

    def scaled(self, factor: float) -> LatencyDist:
        """This distribution with every duration multiplied by ``factor``."""
        q, i = self.queue_ms, self.inference_ms
        return LatencyDist(
            (q[0] * factor, q[1] * factor, q[2] * factor),
            (i[0] * factor, i[1] * factor, i[2] * factor),
        )


@dataclass(frozen=True)
class LatencyProfile:
    """Latency distributions per model path, with a default for the others."""

    default: LatencyDist
    per_model: Mapping[str, LatencyDist] = field(default_factory=dict)

    def for_model(self, model: str) -> LatencyDist:
        """The distribution of ``model`` (a model path), else the default one."""
        return self.per_model.get(model, self.default)

    @classmethod
    def realistic(cls) -> LatencyProfile:
        """Images in a few seconds; a 5 s video in 1-3 minutes.

        Images: 100-600 ms queued, 1-6 s of inference; LoRA and the upscaler up to 9-10 s.
        8 s videos take 8/5 as long as 5 s ones.
        """
        dev = LatencyDist((100, 250, 600), (1000, 2200, 6000))
        pro = LatencyDist((100, 300, 700), (1200, 2800, 6000))
        return cls(
            default=LatencyDist((100, 250, 600), (1000, 2500, 6000)),
            per_model={
                "wavespeed-ai/flux-kontext-dev": dev,
                "wavespeed-ai/flux-kontext-pro/text-to-image": pro,
                "wavespeed-ai/flux-dev-lora": LatencyDist((100, 300, 800), (1500, 3500, 9000)),
                "wavespeed-ai/image-upscaler": LatencyDist((100, 250, 600), (2000, 4000, 10000)),
                # For the default 5 s; an 8 s video takes 8/5 as long.
                "wavespeed-ai/wan-2.2/t2v-480p": LatencyDist(
                    (1000, 3000, 10000), (60_000, 100_000, 180_000)
                ),
            },
        )

    @classmethod
    def fast(cls) -> LatencyProfile:
        """For tests: 1-5 ms queued, 4-35 ms of inference (about 5-40 ms in all)."""
        return cls(default=LatencyDist((1, 2, 5), (4, 12, 35)))

    def scaled(self, factor: float) -> LatencyProfile:
        """This profile with every duration multiplied by ``factor``."""
        if not (factor >= 0 and math.isfinite(factor)):
            raise ValueError(f"factor: {factor!r}; allowed: a finite number >= 0")
        return LatencyProfile(
            default=self.default.scaled(factor),
            per_model={k: v.scaled(factor) for k, v in self.per_model.items()},
        )


def _realistic() -> LatencyProfile:
    return LatencyProfile.realistic()


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator does; everything random derives from ``seed``."""

    seed: int = 0
    #: ``None``: any non-empty Bearer key is accepted; else only this one (401 otherwise).
    #: Kept out of the repr, like any key.
    api_key: str | None = field(default=None, repr=False)
    latency: LatencyProfile = field(default_factory=_realistic)
    #: Fraction of tasks that end ``failed`` (codes 5000, 1403 or 5003).
    failure_rate: float = 0.0
    submit_faults: FaultRates = field(default_factory=FaultRates)
    poll_faults: FaultRates = field(default_factory=FaultRates)
    limits: Limits = field(default_factory=Limits)
    #: How long ``enable_sync_mode`` holds the POST before answering processing/5004.
    sync_wait_s: float = 90.0
    #: How long a ``stall`` fault holds the response.
    stall_s: float = 30.0
    #: USD; a float is taken as written (``Decimal(str(x))``). A ``Decimal`` after init.
    initial_balance: Decimal | float = Decimal(100)
    #: Refuse a submit whose price exceeds the balance: HTTP 403 with envelope code 402
    #: (off by default: benchmarks run long, and the balance may go below zero).
    enforce_balance: bool = False
    #: Unit prices (USD per image, per second of video or per task, by the model's rule)
    #: that replace the catalogue's, by model id. ``Decimal`` values after init.
    prices: Mapping[str, Decimal | float] = field(default_factory=dict)
    #: USD per image of a model outside the catalogue.
    default_price: Decimal | float = Decimal("0.03")
    #: Fraction (0 ~ 1) taken off every price: ``discounted_price`` and what is charged.
    discount_rate: Decimal | float = Decimal(0)
    #: Models added to the catalogue, or replacing its entry of the same ``model_id``.
    models: Sequence[EmulatedModel] = ()
    #: Run tasks of models outside the catalogue (any body with a ``prompt``); ``False``
    #: answers 404 to them, as the API does for a model that does not exist.
    accept_unknown_models: bool = True
    #: Serve ``POST /api/v3/model/price``; ``False`` answers 404 there, so a client's
    #: fallback to the older ``/api/v3/model/pricing`` can be tested.
    serve_model_price: bool = True
    max_upload_bytes: int = 300 * 1024 * 1024
    #: Every answer about a task carries its inputs (``input``), polls included, as the
    #: API's answers may; by default only the submit's answer does.
    echo_input: bool = False
    #: Fraction of webhook deliveries dropped (recorded as failures, never retried).
    webhook_failure_rate: float = 0.0
    #: Deliver webhooks to any host; by default only to loopback addresses (127.0.0.0/8,
    #: ::1, localhost), so a placeholder URL never receives a request.
    webhook_any_host: bool = False
    #: ``Retry-After`` seconds on injected 429s and 503s.
    retry_after_s: int = 1
    #: Byte budget of the LRU cache of generated PNGs.
    image_cache_bytes: int = 64 * 1024 * 1024
    #: ``None``: real time; a ``ManualClock`` for tests that step time.
    clock: ManualClock | None = None

    def __post_init__(self) -> None:
        for name in ("failure_rate", "webhook_failure_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: {value!r} is not a probability; allowed: 0 ~ 1")
        for name in ("sync_wait_s", "stall_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.max_upload_bytes < 0:
            raise ValueError("max_upload_bytes: must be >= 0")
        for name in ("initial_balance", "default_price", "discount_rate"):
            object.__setattr__(self, name, to_money(getattr(self, name), name))
        if not Decimal(0) <= Decimal(self.discount_rate) <= Decimal(1):
            raise ValueError(f"discount_rate: {self.discount_rate}; allowed: 0 ~ 1")
        if Decimal(self.default_price) < 0:
            raise ValueError(f"default_price: {self.default_price}; allowed: >= 0")
        prices = {k: to_money(v, f"prices[{k!r}]") for k, v in self.prices.items()}
        for model_id, price in prices.items():
            if price < 0:
                raise ValueError(f"prices[{model_id!r}]: {price}; allowed: >= 0")
        object.__setattr__(self, "prices", prices)
        models = tuple(self.models)
        for model in models:
            if not isinstance(model, EmulatedModel):
                raise TypeError(f"models: {model!r} is not an EmulatedModel")
        object.__setattr__(self, "models", models)
