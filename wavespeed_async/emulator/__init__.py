"""A local emulator of the WaveSpeed v3 REST API, for tests and benchmarks.

``async with Emulator(EmulatorConfig(latency=LatencyProfile.fast())) as emu:`` starts an
aiohttp server on 127.0.0.1; point a client at ``emu.base_url``. ``Emulator(port=None)``
opens no socket: ``await emu.handle(method, path, headers, body)`` serves the same answers
in process, and ``Client(base_url=emu.base_url, transport=emu.transport())`` sends a Client's
requests there. ``python -m wavespeed_async.emulator`` runs one from the command line. The
models it runs, with their JSON Schemas and prices, are in ``CATALOGUE``. See
``docs/emulator.md``.
"""

from wavespeed_async.emulator._billing import BillingRecord
from wavespeed_async.emulator._catalogue import CATALOGUE, EmulatedModel
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
from wavespeed_async.emulator._history import HISTORY_DAYS
from wavespeed_async.emulator._limits import INSUFFICIENT_BALANCE_CODE
from wavespeed_async.emulator._png import ASPECT_SIZES
from wavespeed_async.emulator._server import IN_PROCESS_BASE_URL, Emulator
from wavespeed_async.emulator._stats import EmulatorStats, TaskRecord
from wavespeed_async.emulator._transport import EmulatorTransport
from wavespeed_async.emulator._wire import (
    EmulatedDisconnect,
    EmulatedResponse,
    ResetAfterRequest,
    ResetBeforeRequest,
)

__all__ = [
    "ASPECT_SIZES",
    "CATALOGUE",
    "FAULT_KINDS",
    "HISTORY_DAYS",
    "INSUFFICIENT_BALANCE_CODE",
    "IN_PROCESS_BASE_URL",
    "TIERS",
    "BillingRecord",
    "EmulatedDisconnect",
    "EmulatedModel",
    "EmulatedResponse",
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "EmulatorTransport",
    "FaultRates",
    "LatencyDist",
    "LatencyProfile",
    "Limits",
    "ManualClock",
    "ResetAfterRequest",
    "ResetBeforeRequest",
    "TaskRecord",
]
