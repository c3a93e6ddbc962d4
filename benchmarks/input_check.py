"""What the catalogue check costs a Client: its first submit, and every submit after it.

Run ``python benchmarks/input_check.py`` (or ``python -m benchmarks.input_check``). Against
the emulator in this process (no socket, so the figures are the client's own work plus the
emulator's answer, not a network's), it prints medians of:

* the first submit of a new Client, with the check on (the catalogue fetched, decoded and
  the model's schema compiled before the POST) and off, for the emulator's catalogue of 5
  models and for one of 300; and with the catalogue read from a warm file instead;
* the check of one submit once the catalogue is loaded (``Client._check_request``, a
  10-field input of a LoRA model), and a whole submit with the check on and off, in
  alternating rounds.

Timing uses ``time.perf_counter``; nothing else runs. ``--rounds`` sets the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wavespeed_async import CatalogConfig, Client
from wavespeed_async._core.schema import compile_schema
from wavespeed_async.emulator import (
    CATALOGUE,
    EmulatedModel,
    Emulator,
    EmulatorConfig,
    LatencyProfile,
    ManualClock,
)

LORA: Final = "wavespeed-ai/flux-dev-lora"
#: A 10-field input of the LoRA model (one field a list of two LoRAs).
BODY: Final[dict[str, Any]] = {
    "prompt": "a watercolour fox",
    "loras": [{"path": "owner/watercolour", "scale": 0.8}, {"path": "owner/fox", "scale": 1.5}],
    "size": "1024*768",
    "num_inference_steps": 28,
    "guidance_scale": 3.5,
    "num_images": 1,
    "seed": 7,
    "enable_base64_output": False,
    "enable_safety_checker": True,
    "enable_sync_mode": False,
}


def big_catalogue(n: int) -> tuple[EmulatedModel, ...]:
    """``n`` models beside the emulator's own, each with the LoRA model's schema."""
    lora = CATALOGUE[LORA]
    return tuple(
        EmulatedModel(
            model_id=f"bench/model-{i:03d}",
            name=f"Model {i}",
            description=lora.description,
            type=lora.type,
            request_schema=lora.request_schema,
            unit_price=lora.unit_price,
        )
        for i in range(n)
    )


def client(emu: Emulator, **catalog: Any) -> Client:
    return Client("bench", base_url=emu.base_url, transport=emu.transport(),
                  catalog=CatalogConfig(**catalog))  # fmt: skip


async def first_submit_ms(emu: Emulator, rounds: int, **catalog: Any) -> float:
    """The median time of a new Client's first submit, in ms."""
    times: list[float] = []
    for i in range(rounds):
        async with client(emu, **catalog) as c:
            start = time.perf_counter()
            await c.submit(LORA, {**BODY, "seed": i})
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def per_check_us(emu: Emulator, rounds: int, batch: int) -> tuple[float, float]:
    """The median time in us of the check of one submit once the catalogue is loaded.

    Measured through the Client and by the compiled checker alone (alternating rounds).
    """
    async with client(emu) as c:
        await c.check_input(LORA, BODY)  # load and compile
        checker = compile_schema(LORA, CATALOGUE[LORA].request_schema)
        through: list[float] = []
        alone: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(batch):
                await c._check_request(LORA, BODY)
            through.append((time.perf_counter_ns() - start) / batch / 1000)
            start = time.perf_counter_ns()
            for _ in range(batch):
                checker.check(BODY)
            alone.append((time.perf_counter_ns() - start) / batch / 1000)
    return statistics.median(through), statistics.median(alone)


async def per_submit_us(emu: Emulator, rounds: int, batch: int) -> tuple[float, float, float]:
    """The median time in us of a whole submit with the check on and off, and their difference.

    The difference is the median of the rounds' paired differences (alternating, each first
    in half the rounds).
    """
    on: list[float] = []
    off: list[float] = []
    async with client(emu) as checked, client(emu, check="off") as unchecked:
        await checked.check_input(LORA, BODY)
        await unchecked.submit(LORA, BODY)  # open both before timing
        pairs = [(checked, on), (unchecked, off)]
        for i in range(rounds):
            for c, out in pairs if i % 2 else pairs[::-1]:  # each first in half the rounds
                start = time.perf_counter_ns()
                for _ in range(batch):
                    await c.submit(LORA, BODY)
                out.append((time.perf_counter_ns() - start) / batch / 1000)
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    return statistics.median(on), statistics.median(off), statistics.median(diffs)


async def run(rounds: int, batch: int) -> None:
    fast = LatencyProfile.fast()
    config = EmulatorConfig(clock=ManualClock(), latency=fast, accept_unknown_models=True)
    big = EmulatorConfig(clock=ManualClock(), latency=fast, models=big_catalogue(300))
    print("catalogue check, through a Client against the in-process emulator")
    for name, cfg in (("5 models", config), ("305 models", big)):
        async with Emulator(cfg, port=None) as emu:
            on = await first_submit_ms(emu, rounds, disk_cache=False)
            off = await first_submit_ms(emu, rounds, check="off")
            with tempfile.TemporaryDirectory() as folder:
                async with client(emu, cache_dir=folder) as c:
                    await c.models()  # writes the file
                warm = await first_submit_ms(emu, rounds, cache_dir=folder)
            print(f"  first submit, {name:10}  check on {on:7.2f} ms   off {off:6.2f} ms   "
                  f"from a warm file {warm:6.2f} ms")  # fmt: skip
    async with Emulator(config, port=None) as emu:
        check, alone = await per_check_us(emu, rounds, batch)
        on_us, off_us, diff_us = await per_submit_us(emu, rounds, batch)
    print(f"  the check of one submit (10 fields): {check:7.2f} us median "
          f"(the compiled checker alone: {alone:.2f} us)")  # fmt: skip
    print(f"  a whole submit: check on {on_us:7.1f} us, off {off_us:7.1f} us "
          f"(median paired difference {diff_us:+.1f} us)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--batch", type=int, default=200, help="calls per round (default 200)")
    args = parser.parse_args(argv)
    asyncio.run(run(args.rounds, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
