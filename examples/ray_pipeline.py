"""Bulk text-to-image as one step of a Ray Data pipeline: prompts in, Parquet out.

Run it (from the project root; ``pip install -e ".[ray]"``)::

    python examples/ray_pipeline.py --emulator --latency fast    # built-in emulator, no bill
    python examples/ray_pipeline.py --prompts prompts.parquet --out images.parquet

By default it writes under ``out/ray_pipeline/`` (``out/`` is git-ignored): the Parquet
output in ``images.parquet/`` and the ledger in ``ledger/``.

As every example: with ``--emulator``, or when ``$WAVESPEED_API_KEY`` is not set, it starts
the built-in emulator (here in its own process, since Ray's actors are other processes) and
runs against it; otherwise it uses the real API, and each row is billed once.

The rows' tasks are recorded in a ledger (``--ledger``, a folder): run the same command
again and nothing is submitted twice; rows already done are answered from the ledger.
Exit code 1 if any row did not complete.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ray

from wavespeed_async import PollConfig
from wavespeed_async.ray import generate

MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"
#: Where the outputs go by default: ``out/`` is git-ignored, so a run leaves a clone clean.
OUT = Path("out") / "ray_pipeline"
SUBJECTS = [
    "a lighthouse on a rocky coast at dusk",
    "a red fox asleep in fresh snow",
    "a tiny bakery with a striped awning, isometric",
    "a bowl of ramen, top-down food photography",
    "a vintage tram climbing a steep street in the rain",
]


@contextlib.contextmanager
def emulator_process(latency: str) -> Iterator[str]:
    """``python -m wavespeed_async.emulator`` on a free port of 127.0.0.1; yields its URL."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "wavespeed_async.emulator", "--port", "0", "--latency", latency],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        if "listening on " not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--prompts", help="a Parquet file or folder with a 'prompt' column")
    parser.add_argument("--rows", type=int, default=20, help="rows of the built-in prompts")
    parser.add_argument("--out", type=Path, default=OUT / "images.parquet", help="Parquet out")
    parser.add_argument("--ledger", type=Path, default=OUT / "ledger", help="ledger folder")
    parser.add_argument("--actors", type=int, default=2, help="actors (one Client each)")
    parser.add_argument("--concurrency", type=int, default=16, help="rows at once per actor")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, base_url: str | None) -> int:
    if args.prompts:
        ds = ray.data.read_parquet(args.prompts)
    else:
        items = [{"prompt": f"{SUBJECTS[i % len(SUBJECTS)]}, take {i}"} for i in range(args.rows)]
        ds = ray.data.from_items(items)
    # The emulator's fast tasks take milliseconds: poll on that scale, not the API's.
    fast = base_url is not None and args.latency == "fast"
    out = generate(
        ds,
        model=MODEL,
        actors=args.actors,
        concurrency=args.concurrency,
        ledger=args.ledger,
        base_url=base_url,
        poll=PollConfig(expected_duration_s=0.03, min_interval_s=0.005) if fast else None,
    )
    out.write_parquet(str(args.out))
    done = ray.data.read_parquet(str(args.out)).select_columns(["status"]).take_all()
    counts = collections.Counter(row["status"] for row in done)
    print(f"{len(done)} rows written to {args.out}/: {dict(sorted(counts.items()))}")
    return 0 if counts["completed"] == len(done) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_emulator = args.emulator or not os.environ.get("WAVESPEED_API_KEY")
    with contextlib.ExitStack() as stack:
        base_url = None
        if use_emulator:
            base_url = stack.enter_context(emulator_process(args.latency))
            print(f"emulator: {base_url} (nothing is billed)", file=sys.stderr)
            # Ray's workers inherit this process's environment: the key they will use.
            os.environ["WAVESPEED_API_KEY"] = "emulator-key"
        ray.init(include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        return run(args, base_url)


if __name__ == "__main__":
    sys.exit(main())
