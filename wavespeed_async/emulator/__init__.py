"""A local emulator of the WaveSpeed v3 REST API, for tests and benchmarks.

``async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:`` starts an
aiohttp server on 127.0.0.1; point a client at ``emu.base_url``. ``python -m
wavespeed_async.emulator`` runs one from the command line. See ``docs/emulator.md``.
"""

from wavespeed_async.emulator._config import (
    FAULT_KINDS,
    TIERS,
    EmulatorConfig,
    FaultRates,
    LatencyDist,
    LatencyProfile,
    Limits,
    ManualClock,
)
from wavespeed_async.emulator._png import ASPECT_SIZES
from wavespeed_async.emulator._server import Emulator
from wavespeed_async.emulator._stats import EmulatorStats, TaskRecord

__all__ = [
    "ASPECT_SIZES",
    "FAULT_KINDS",
    "TIERS",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "FaultRates",
    "LatencyDist",
    "LatencyProfile",
    "Limits",
    "ManualClock",
    "TaskRecord",
]
