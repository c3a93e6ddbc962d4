"""Save task ids as they are created; collect the tasks later, in another run, by id.

Run it (from the project root)::

    python examples/resume_from_ids.py --emulator        # both steps, on the built-in emulator
    python examples/resume_from_ids.py submit --ids ids.txt     # with a key: submit, then stop
    python examples/resume_from_ids.py collect --ids ids.txt    # later, in another process

``submit`` starts a batch and writes each task id to the ids file the moment it exists
(``run_many(on_task_created=...)``, before any polling), then stops early, as a crash or a
deploy would: the tasks it leaves go on running, and are billed, on the server. ``collect``
reads the ids and waits for every task with ``client.wait_many(ids)``, saving the outputs
as ``<out>/<task id>_<n>.png``; run it again and it collects them again (nothing is
submitted). With ``--emulator`` (or without ``$WAVESPEED_API_KEY``) both steps run in this
process against the built-in emulator, whose tasks live as long as it does. Exit code 1 if
a task did not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from wavespeed_async import Client, PollConfig

MODEL = "wavespeed-ai/flux-kontext-pro/text-to-image"


async def submit(client: Client, ids_file: Path, count: int, stop_after: int) -> None:
    """Start ``count`` tasks, saving each id at once; leave after ``stop_after`` results."""
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    with ids_file.open("a", encoding="utf-8") as saved:

        def keep(index: int, task_id: str) -> None:
            saved.write(task_id + "\n")
            saved.flush()  # on disk before the task is polled: a crash loses no id
            os.fsync(saved.fileno())

        inputs = [{"prompt": f"a lighthouse at dusk, take {i}"} for i in range(count)]
        seen = 0
        async with client.run_many(MODEL, inputs, on_task_created=keep) as results:
            async for _ in results:
                seen += 1
                if seen >= stop_after:
                    break  # as a crash would: the other tasks keep running on the server
    print(f"submit: {count} task id(s) in {ids_file}; left after {seen} result(s)")


async def collect(client: Client, ids_file: Path, out: Path) -> int:
    """Wait for every task named in ``ids_file``; save the outputs of those that completed."""
    text = await anyio.Path(ids_file).read_text(encoding="utf-8")
    ids = [line.strip() for line in text.splitlines()]
    ids = list(dict.fromkeys(i for i in ids if i))  # once each, in order
    done = failed = 0
    async with client.wait_many(ids, concurrency=64) as results:
        async for r in results:
            if r.ok:
                await client.download(r.prediction, out)
                done += 1
            else:
                print(f"task {r.id}: {r.error}", file=sys.stderr)
                failed += 1
    print(f"collect: {done} of {len(ids)} task(s) completed, outputs in {out}/")
    return 0 if failed == 0 else 1


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("step", nargs="?", choices=["submit", "collect", "both"], default="both")
    parser.add_argument("--ids", type=Path, default=Path("out") / "resume" / "ids.txt")
    parser.add_argument("--out", type=Path, default=Path("out") / "resume")
    parser.add_argument("--count", type=int, default=8, help="tasks to submit")
    parser.add_argument("--stop-after", type=int, default=2, help="results before leaving")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    args = parser.parse_args(argv)
    if not args.emulator and os.environ.get("WAVESPEED_API_KEY"):
        async with Client() as client:
            if args.step in ("submit", "both"):
                await submit(client, args.ids, args.count, args.stop_after)
            if args.step == "submit":
                return 0
        async with Client() as client:  # a new Client, as another process would make
            return await collect(client, args.ids, args.out)
    from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

    fast = args.latency == "fast"
    profile = LatencyProfile.fast() if fast else LatencyProfile.realistic()
    async with Emulator(EmulatorConfig(latency=profile)) as emu:
        print(f"emulator: {emu.base_url} (nothing is billed)", file=sys.stderr)
        options: dict[str, Any] = {"base_url": emu.base_url}
        if fast:
            options["poll"] = PollConfig(expected_duration_s=0.03, min_interval_s=0.005)
        args.ids.unlink(missing_ok=True)  # this emulator knows none of an earlier run's ids
        async with Client("emulator-key", **options) as client:
            await submit(client, args.ids, args.count, args.stop_after)
        async with Client("emulator-key", **options) as client:
            return await collect(client, args.ids, args.out)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
