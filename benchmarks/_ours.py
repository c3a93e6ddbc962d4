"""Client 1: ``wavespeed_async`` through ``Client.run_many``: default polling, or webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from aiohttp import web

from benchmarks._common import MODEL, Checkpoint, PhaseOutcome, Stopwatch, WorkerSpec, prompts
from wavespeed_async import (
    Client,
    Event,
    EventStream,
    FlowLimits,
    WebhookVerificationError,
    verify_webhook,
)

__all__ = ["run"]


@asynccontextmanager
async def _receiver(client: Client) -> AsyncIterator[str]:
    """A webhook endpoint on 127.0.0.1 that verifies deliveries and wakes the waits."""
    secret = await client.webhook_secret()

    async def deliver(request: web.Request) -> web.Response:
        try:
            pred = verify_webhook(secret, request.headers, await request.read())
        except WebhookVerificationError:
            return web.Response(status=401)
        client.deliver(pred)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", deliver)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def _batch(
    client: Client, spec: WorkerSpec, n: int, tag: str, webhook: str | None
) -> PhaseOutcome:
    watch = Stopwatch()
    ok = failed = 0
    timed_out = True
    with anyio.move_on_after(spec.time_limit_s):
        async with client.run_many(
            MODEL, prompts(tag, n), concurrency=spec.concurrency, webhook=webhook
        ) as rs:
            async for r in rs:
                if r.ok:
                    ok += 1
                else:
                    failed += 1
        timed_out = False
    return watch.stop(jobs=n, ok=ok, failed=failed, timed_out=timed_out)


async def _main(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    limits = FlowLimits(
        max_in_flight=spec.max_in_flight,
        max_polls_per_s=spec.max_polls_per_s,
        max_connections=spec.max_connections,
    )
    counted = [0]

    def count(event: Event) -> None:
        counted[0] += 1

    on_event = count if spec.events == "listener" else None
    async with Client(
        api_key="benchmark", base_url=spec.base_url, limits=limits, on_event=on_event
    ) as client:
        if spec.events == "stream":
            async with anyio.create_task_group() as tg, client.events() as stream:
                tg.start_soon(_read, stream)
                try:
                    return await _with_webhook(client, spec, checkpoint)
                finally:
                    stream.close()
        return await _with_webhook(client, spec, checkpoint)


async def _read(stream: EventStream) -> None:
    """A subscriber that reads every event (and does nothing with it)."""
    async for _ in stream:
        pass


async def _with_webhook(
    client: Client, spec: WorkerSpec, checkpoint: Checkpoint
) -> tuple[PhaseOutcome, PhaseOutcome]:
    if spec.webhook:
        async with _receiver(client) as url:
            return await _phases(client, spec, checkpoint, url)
    return await _phases(client, spec, checkpoint, None)


async def _phases(
    client: Client, spec: WorkerSpec, checkpoint: Checkpoint, webhook: str | None
) -> tuple[PhaseOutcome, PhaseOutcome]:
    warm = await _batch(client, spec, spec.warmup, f"{spec.tag} warm-up", webhook)
    # Blocks the loop on purpose: nothing runs between the two batches.
    checkpoint(warm)
    measured = await _batch(client, spec, spec.jobs, spec.tag, webhook)
    return warm, measured


def run(spec: WorkerSpec, checkpoint: Checkpoint) -> tuple[PhaseOutcome, PhaseOutcome]:
    """Warm up, report, then run the measured batch with the same Client."""
    return anyio.run(_main, spec, checkpoint)
