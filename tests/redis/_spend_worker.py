"""One OS process of the shared-budget test: a Client with a budget, run from the command line.

``python -m tests.redis._spend_worker BASE_URL SHARE_URL --budget-usd 0.25 --jobs 12`` opens
its Client (and share), prints ``ready``, waits for a line on stdin (so that every process
starts together), runs its batch and prints one JSON line: what it sent and held back.
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from tests.conftest import CANARY_KEY, fast_poll, fast_retry
from wavespeed_async import BudgetExceeded, Client, FlowLimits
from wavespeed_async.redis import RedisShare

MODEL = "wavespeed-ai/flux-kontext-dev"


async def main(args: argparse.Namespace) -> None:
    client = Client(
        CANARY_KEY,
        base_url=args.base_url,
        poll=fast_poll(),
        retry=fast_retry(),
        limits=FlowLimits(max_in_flight=4, budget_usd=args.budget_usd),
        share=RedisShare(args.share, budget_name=args.budget_name),
    )
    sent = held = 0
    async with client:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        inputs = [{"prompt": f"{args.name}-{i}"} for i in range(args.jobs)]
        async with client.run_many(MODEL, inputs) as results:
            async for r in results:
                sent += r.id is not None
                held += isinstance(r.error, BudgetExceeded)
    print(json.dumps({"sent": sent, "held_back": held}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("share")
    p.add_argument("--name", default="w")
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--budget-usd", default="0.25")
    p.add_argument("--budget-name", default="default")
    anyio.run(main, p.parse_args(sys.argv[1:]))
