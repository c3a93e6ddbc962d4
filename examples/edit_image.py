"""Edit a local image with FLUX.1 Kontext [dev]: upload it, run the edit, save the result.

Run it (from the project root; ``pip install -e .`` first)::

    python examples/edit_image.py --emulator          # built-in emulator: no key, no bill
    python examples/edit_image.py photo.png --prompt "Make it a snowy winter night"

Every example follows one convention: with ``--emulator``, or when ``$WAVESPEED_API_KEY`` is
not set, it starts the built-in emulator in-process and runs against it (nothing is billed;
``--latency fast`` makes it finish in milliseconds). Otherwise it uses the real API with the
key from ``$WAVESPEED_API_KEY``, and each task is billed.

Default input: ``examples/images/cottage.png``. Outputs go to ``--out`` (``edited/``) as
``<task id>_0.png``; their paths are printed, one a line, on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from wavespeed_async import Client, FluxKontextDev, PollConfig, ValidationError, WaveSpeedError

DEFAULT_IMAGE = Path(__file__).parent / "images" / "cottage.png"
DEFAULT_PROMPT = "Turn it into a snowy winter evening, warm light in the windows"


@contextlib.asynccontextmanager
async def open_client(emulator: bool, latency: str) -> AsyncIterator[Client]:
    """A Client for the real API, or for an emulator started here (see the docstring)."""
    if not emulator and os.environ.get("WAVESPEED_API_KEY"):
        async with Client() as client:
            yield client
        return
    from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

    fast = latency == "fast"
    profile = LatencyProfile.fast() if fast else LatencyProfile.realistic()
    # Tasks of the fast profile take milliseconds: poll on that scale, not the API's.
    poll = PollConfig(expected_duration_s=0.03, min_interval_s=0.005) if fast else None
    async with Emulator(EmulatorConfig(latency=profile)) as emu:
        print(f"emulator: {emu.base_url} (nothing is billed)", file=sys.stderr)
        async with Client("emulator-key", base_url=emu.base_url, poll=poll) as client:
            yield client


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the edit to make")
    parser.add_argument("--size", default="1024*1024", help="output size, W*H")
    parser.add_argument("--seed", type=int, default=-1, help="-1: a random seed")
    parser.add_argument("--out", type=Path, default=Path("edited"), help="output directory")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Check the edit before uploading anything: a bad size fails here, not after.
        FluxKontextDev(prompt=args.prompt, size=args.size, seed=args.seed)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.image.is_file():
        print(f"error: {args.image}: no such file", file=sys.stderr)
        return 2
    async with open_client(args.emulator, args.latency) as client:
        try:
            image_url = await client.upload(args.image)
            print(f"uploaded {args.image.name}", file=sys.stderr)
            request = FluxKontextDev(
                prompt=args.prompt, image=image_url, size=args.size, seed=args.seed
            )
            pred = await client.run(request)
            print(f"task {pred.id} completed in {pred.inference_ms} ms", file=sys.stderr)
            paths = await client.download(pred, args.out)
        except WaveSpeedError as exc:
            # Errors about a task carry its id: it is never lost, even when the call fails.
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
