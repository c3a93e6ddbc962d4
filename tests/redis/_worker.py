"""One OS process of the multi-process tests: its own Client, run from the command line.

``python -m tests.redis._worker BASE_URL --jobs 12 [--share URL] ...`` runs a batch for at
most ``--budget`` seconds and prints one JSON line: what it saw. With ``--hold`` it prints
``holding`` once ``--jobs`` tasks exist and waits to be killed. With ``--wait-go`` it opens its
Client (and share), prints ``ready`` and sends nothing until it reads a line on stdin.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import anyio

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import Client, FlowLimits

MODEL = "wavespeed-ai/flux-kontext-dev"


async def main(args: argparse.Namespace) -> None:
    share: object = None
    if args.share:
        from wavespeed_async.redis import RedisShare

        share = RedisShare(args.share, lease_ttl_s=args.lease_ttl)
    created = 0
    holding = anyio.Event()

    def on_created(index: int, task_id: str) -> None:
        nonlocal created
        created += 1
        if created == args.jobs:
            holding.set()

    client = Client(
        CANARY_KEY,
        base_url=args.base_url,
        poll=fast_poll(),
        # A cool-down heard from the share is cut to max_retry_after_s.
        retry=dataclasses.replace(fast_retry(), max_retry_after_s=args.max_retry_after),
        limits=FlowLimits(max_in_flight=args.max_in_flight, max_tasks_per_minute=args.per_minute),
        share=share,  # type: ignore[arg-type]
    )
    ok = 0
    async with client:
        if args.wait_go:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
        inputs = [{"prompt": f"{args.name}-{i}"} for i in range(args.jobs)]
        with anyio.move_on_after(args.budget):
            async with (
                client.run_many(MODEL, inputs, on_task_created=on_created) as results,
                anyio.create_task_group() as tg,
            ):
                if args.hold:

                    async def announce() -> None:
                        await holding.wait()
                        print("holding", flush=True)

                    tg.start_soon(announce)
                async for r in results:
                    ok += r.ok
    print(json.dumps({"created": created, "ok": ok}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("--name", default="w")
    p.add_argument("--share", default=None)
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--max-in-flight", type=int, default=4)
    p.add_argument("--per-minute", type=int, default=None)
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--lease-ttl", type=float, default=30.0)
    p.add_argument("--max-retry-after", type=float, default=0.05)
    p.add_argument("--hold", action="store_true")
    p.add_argument("--wait-go", action="store_true")
    anyio.run(main, p.parse_args(sys.argv[1:]))
