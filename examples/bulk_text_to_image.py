"""Text-to-image in bulk with FLUX.1 Kontext [pro], with a progress bar.

Run it (from the project root; ``pip install -e ".[cli]"`` for the bar)::

    python examples/bulk_text_to_image.py --emulator          # built-in emulator, no bill
    python examples/bulk_text_to_image.py prompts.txt --concurrency 32 --out images/

Every example follows one convention: with ``--emulator``, or when ``$WAVESPEED_API_KEY`` is
not set, it starts the built-in emulator in-process and runs against it (nothing is billed;
``--latency fast`` makes it finish in milliseconds). Otherwise it uses the real API with the
key from ``$WAVESPEED_API_KEY``, and each task is billed.

Prompts come from a file (one a line; blank lines and ``#`` comments skipped), or a built-in
list. Images are saved as ``<out>/<line number>_<n>.png`` as the tasks complete (in
completion order), so a crash keeps what was done. The bar is ``rich``'s when it is
installed (the ``cli`` extra), else plain lines on stderr (also with ``--plain``). Exit code
1 if any task failed, 2 for bad input (an unreadable prompt file, an aspect ratio the model
does not take), reported in one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from wavespeed_async import (
    Client,
    FluxKontextProTextToImage,
    PollConfig,
    Progress,
    ValidationError,
    WaveSpeedError,
)

PROMPTS = [
    "A lighthouse on a rocky coast at dusk, warm light in the lantern room",
    "A red fox curled up asleep in fresh snow, soft morning light",
    "Isometric illustration of a tiny bakery with a striped awning",
    "A bowl of ramen with a soft-boiled egg, top-down food photography",
    "An astronaut tending a vegetable garden inside a glass dome on Mars",
    "A watercolor map of an imaginary archipelago",
    "A vintage tram climbing a steep street in the rain, reflections on cobbles",
    "A cozy reading nook with a cat and a stack of books, golden hour",
]


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


@contextlib.contextmanager
def progress_bar(progress: Progress, *, plain: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``show(handled)``: redraw with the results handled so far and live counters.

    The live counters are the batch's (tasks running, failed...).
    """
    if not plain:
        try:
            from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress
        except ImportError:  # the `cli` extra is not installed
            plain = True
    if plain:

        def show_line(handled: int) -> None:
            print(f"{handled}/{progress.total} handled | {progress}", file=sys.stderr, flush=True)

        yield show_line
        return
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with RichProgress(*columns, transient=False) as bar:
        task = bar.add_task("generating", total=progress.total)

        def show_bar(handled: int) -> None:
            bar.update(
                task,
                completed=handled,
                description=f"{progress.running} running, {progress.failed} failed",
            )

        yield show_bar


def read_prompts(path: Path | None) -> list[str]:
    if path is None:
        return PROMPTS
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("prompts", nargs="?", type=Path, help="a file of prompts, one a line")
    parser.add_argument("--aspect-ratio", default="1:1", help="e.g. 16:9, 1:1, 9:16")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks at once")
    parser.add_argument("--out", type=Path, default=Path("images"), help="output directory")
    parser.add_argument("--plain", action="store_true", help="plain progress lines, no bar")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        prompts = read_prompts(args.prompts)
        # Typed requests check every field here, before anything is started or sent.
        ratio = args.aspect_ratio
        requests = [FluxKontextProTextToImage(prompt=p, aspect_ratio=ratio) for p in prompts]
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not requests:
        print(f"error: {args.prompts}: no prompts (one a line)", file=sys.stderr)
        return 2
    handled = failed = 0
    async with open_client(args.emulator, args.latency) as client:
        try:
            # Inputs are typed requests, which carry their model: no model argument.
            batch = client.run_many(None, requests, concurrency=args.concurrency)
            async with batch as results:
                with progress_bar(batch.progress, plain=args.plain) as show:
                    show(handled)
                    async for result in results:
                        if result.ok and result.prediction is not None:
                            stem = f"{result.index + 1:04d}"
                            await client.download(result.prediction, args.out, stem=stem)
                        else:
                            failed += 1
                            print(
                                f"prompt {result.index + 1} (task {result.id}): {result.error}",
                                file=sys.stderr,
                            )
                        handled += 1
                        show(handled)
        except WaveSpeedError as exc:  # a bad key or a refused account ends the batch
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{len(prompts) - failed} of {len(prompts)} images saved in {args.out}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
