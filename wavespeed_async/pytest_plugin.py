"""pytest fixtures to test code that uses wavespeed-async against the built-in emulator.

Installing the package registers this plugin with pytest (a ``pytest11`` entry point); it is
loaded by pytest only, never by ``import wavespeed_async``. The fixtures are async: use them
from tests run by anyio's pytest plugin (``@pytest.mark.anyio``), which comes with anyio::

    import pytest

    @pytest.mark.anyio
    async def test_makes_a_picture(wavespeed_client, wavespeed_emulator):
        pred = await wavespeed_client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a fox"})
        assert pred.ok and wavespeed_emulator.stats().tasks_created == 1

Fixtures:

- ``wavespeed_emulator``: a running :class:`~wavespeed_async.emulator.Emulator` on
  127.0.0.1 (fast latency by default), with ``.base_url`` and ``.stats()``. While it runs,
  ``WAVESPEED_BASE_URL`` and ``WAVESPEED_API_KEY`` point at it, so code under test that
  builds its own ``Client()`` talks to the emulator, never to the real API.
- ``wavespeed_client``: an open :class:`~wavespeed_async.Client` bound to it, with polling
  and retry back-off tuned to the emulator's millisecond latencies.
- ``wavespeed_emulator_config``: the :class:`~wavespeed_async.emulator.EmulatorConfig` used;
  built from the ``wavespeed`` marker, or override the fixture to build your own.

The ``wavespeed`` marker sets the emulator up (on a test, a class or a module; the nearest
wins per keyword)::

    @pytest.mark.wavespeed(
        latency="fast",          # "fast", "realistic", or a factor applied to "realistic"
        tier="bronze",           # account limits: bronze, silver, gold, ultra
        faults={"submit.reset_after": 0.1, "poll.server_error_before": 0.2},
        failure_rate=1.0,        # force outcomes: every task fails (code 5000, 1403 or 5003)
        manual_clock=True,       # time moves only with `await wavespeed_emulator.advance(s)`
        seed=7,                  # and any other EmulatorConfig field, e.g. api_key="k"
    )

To force one task's outcome, put a directive in its prompt: ``[fail]``, ``[fail:1200]``,
``[latency:500]``, ``[nsfw]``; to force the next requests' faults, call
``wavespeed_emulator.force_fault("reset", on="submit", times=1)``. See ``docs/emulator.md``.

The client runs on asyncio only (it is built on aiohttp). With trio installed, anyio runs
every ``@pytest.mark.anyio`` test once per backend: the trio runs of the tests that use
these fixtures are deselected (the header says how many), and a fixture that finds itself
under trio anyway (an ``anyio_backend`` fixture returning ``"trio"``) fails the test with
a one-line reason. Tests that build their own ``Client()`` without these fixtures need the
backend pinned in ``conftest.py``::

    @pytest.fixture
    def anyio_backend():
        return "asyncio"
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    # The emulator is imported when a fixture is used, not when pytest loads the plugin:
    # a test run that uses none of these fixtures does not pay for importing it.
    from wavespeed_async._facade.client import Client
    from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

__all__ = [
    "wavespeed_client",
    "wavespeed_emulator",
    "wavespeed_emulator_config",
]

#: The key the fixtures put in ``WAVESPEED_API_KEY`` (the emulator accepts any key unless
#: ``api_key=`` is given to the marker).
TEST_API_KEY: Final = "wavespeed-test-key"

_MARKER: Final = "wavespeed"
_OWN_KEYWORDS: Final = ("latency", "tier", "faults", "manual_clock")
#: The fixtures that need asyncio (``wavespeed_client`` uses ``wavespeed_emulator``).
_ASYNC_FIXTURES: Final = ("wavespeed_emulator", "wavespeed_client")
ASYNCIO_ONLY: Final = (
    "wavespeed-async runs on asyncio only (it is built on aiohttp), not on trio: pin the "
    'backend with an `anyio_backend` fixture returning "asyncio" in conftest.py'
)
_DESELECTED: Final = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(latency=, tier=, faults=, failure_rate=, manual_clock=, **config): set up "
        "the wavespeed_emulator fixture (any EmulatorConfig field is accepted)",
    )


def _backend_of(item: pytest.Item) -> str | None:
    """The anyio backend an item is parametrized with, if any."""
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("anyio_backend") if callspec is not None else None
    if isinstance(backend, tuple) and backend:
        backend = backend[0]
    return backend if isinstance(backend, str) else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests that use these fixtures on asyncio only.

    With trio installed, anyio parametrizes each test with every backend, and the trio runs
    could only fail.
    """
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        backend = _backend_of(item)
        uses = any(name in names for name in _ASYNC_FIXTURES)
        (dropped if uses and backend not in (None, "asyncio") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    config.stash[_DESELECTED] = len(dropped)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    dropped = config.stash.get(_DESELECTED, 0)
    if not dropped:
        return None
    return (
        f"wavespeed-async: {dropped} non-asyncio run(s) of tests using its fixtures "
        "deselected (the client runs on asyncio only)"
    )


def _require_asyncio() -> None:
    """Fail the test, in one line, when a fixture runs under another event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.fail(ASYNCIO_ONLY, pytrace=False)


def _latency(value: object) -> LatencyProfile:
    from wavespeed_async.emulator import LatencyProfile

    if isinstance(value, LatencyProfile):
        return value
    if value == "fast":
        return LatencyProfile.fast()
    if value == "realistic":
        return LatencyProfile.realistic()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return LatencyProfile.realistic().scaled(float(value))
    raise pytest.UsageError(
        f"wavespeed marker: latency={value!r}; allowed: 'fast', 'realistic', a factor >= 0 "
        "of 'realistic', or a LatencyProfile"
    )


def _faults(value: object) -> dict[str, Any]:
    from wavespeed_async.emulator import FaultRates

    if not isinstance(value, Mapping):
        raise pytest.UsageError(
            "wavespeed marker: faults= must be a mapping like {'submit.reset_after': 0.1}"
        )
    rates: dict[str, dict[str, float]] = {"submit": {}, "poll": {}}
    for key, rate in value.items():
        target, _, name = str(key).partition(".")
        if target not in rates or name not in FaultRates.names():
            raise pytest.UsageError(
                f"wavespeed marker: faults key {key!r}; allowed: 'submit.KIND' or 'poll.KIND', "
                f"KIND one of {', '.join(FaultRates.names())}"
            )
        rates[target][name] = float(rate)
    return {
        "submit_faults": FaultRates(**rates["submit"]),
        "poll_faults": FaultRates(**rates["poll"]),
    }


def config_from_marker(kwargs: Mapping[str, Any]) -> EmulatorConfig:
    """The EmulatorConfig that ``@pytest.mark.wavespeed(**kwargs)`` asks for."""
    from wavespeed_async.emulator import TIERS, EmulatorConfig, Limits, ManualClock

    fields: dict[str, Any] = {k: v for k, v in kwargs.items() if k not in _OWN_KEYWORDS}
    unknown = set(fields) - {f.name for f in dataclasses.fields(EmulatorConfig)}
    if unknown:
        raise pytest.UsageError(
            f"wavespeed marker: unknown keyword(s) {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(_OWN_KEYWORDS)} and the fields of EmulatorConfig"
        )
    fields["latency"] = _latency(kwargs.get("latency", "fast"))
    if "tier" in kwargs:
        tier = kwargs["tier"]
        if not isinstance(tier, str) or tier.lower() not in TIERS:
            raise pytest.UsageError(
                f"wavespeed marker: tier={tier!r}; allowed: one of {', '.join(TIERS)}"
            )
        fields["limits"] = Limits.tier(tier)
    if "faults" in kwargs:
        fields.update(_faults(kwargs["faults"]))
    if kwargs.get("manual_clock"):
        fields["clock"] = ManualClock()
    try:
        return EmulatorConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"wavespeed marker: {exc}") from None


@pytest.fixture
def wavespeed_emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    """The emulator's configuration, from the ``wavespeed`` marker (fast latency if none)."""
    kwargs: dict[str, Any] = {}
    # iter_markers yields the nearest first: let it win by applying it last.
    for mark in reversed(list(request.node.iter_markers(_MARKER))):
        if mark.args:
            raise pytest.UsageError("wavespeed marker: takes keyword arguments only")
        kwargs.update(mark.kwargs)
    return config_from_marker(kwargs)


@pytest.fixture
async def wavespeed_emulator(
    wavespeed_emulator_config: EmulatorConfig, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Emulator]:
    """A running emulator on 127.0.0.1, with ``$WAVESPEED_BASE_URL`` pointing at it."""
    _require_asyncio()
    from wavespeed_async.emulator import Emulator

    async with Emulator(wavespeed_emulator_config) as emu:
        monkeypatch.setenv("WAVESPEED_BASE_URL", emu.base_url)
        monkeypatch.setenv("WAVESPEED_API_KEY", wavespeed_emulator_config.api_key or TEST_API_KEY)
        yield emu


@pytest.fixture
async def wavespeed_client(wavespeed_emulator: Emulator) -> AsyncIterator[Client]:
    """An open Client bound to ``wavespeed_emulator``, polling at emulator speed."""
    from wavespeed_async import Client, PollConfig, RetryConfig

    async with Client(
        wavespeed_emulator.config.api_key or TEST_API_KEY,
        base_url=wavespeed_emulator.base_url,
        poll=PollConfig(expected_duration_s=0.03, min_interval_s=0.005, max_interval_s=0.05),
        retry=RetryConfig(backoff_base_s=0.001, max_backoff_s=0.01, max_retry_after_s=0.05),
    ) as client:
        yield client
