"""A FastAPI app that generates images; WaveSpeed pushes each result to its webhook endpoint.

Run it (from the project root; ``pip install -e ".[fastapi]" uvicorn``)::

    python examples/fastapi_app.py --emulator             # serves http://127.0.0.1:8000
    curl -X POST http://127.0.0.1:8000/generate \\
         -H 'content-type: application/json' -d '{"prompt": "a red fox in the snow"}'

    python examples/fastapi_app.py --emulator --demo      # start, make one request, print, stop

Every example follows one convention: with ``--emulator``, or when ``$WAVESPEED_API_KEY`` is
not set, it starts the built-in emulator in-process and runs against it (nothing is billed;
``--latency fast`` makes it finish in milliseconds). Otherwise it uses the real API with the
key from ``$WAVESPEED_API_KEY``, and each task is billed.

With the real API, WaveSpeed must be able to reach the webhook endpoint: give the app's
public https address with ``--public-url`` (or ``$PUBLIC_URL``), e.g. a tunnel to this port.
Without one, results are polled. To serve with your own uvicorn command instead, from
``examples/``: ``PUBLIC_URL=https://... uvicorn fastapi_app:app``.

Endpoints: ``POST /generate`` (runs FLUX.1 Kontext [pro] text-to-image and answers when it is
done), ``GET /tasks/{id}`` (a task's current state, e.g. one whose caller went away),
``POST /wavespeed/webhook`` (WaveSpeed's deliveries, verified).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime.

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Annotated, Any

import aiohttp
import anyio
import uvicorn
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from wavespeed_async import Client, FluxKontextProTextToImage, PollConfig
from wavespeed_async.fastapi import WaveSpeed, install_error_handlers


class GenerateRequest(BaseModel):
    prompt: str
    aspect_ratio: str = "1:1"
    seed: int | None = None


class TaskView(BaseModel):
    id: str
    status: str
    outputs: list[str]
    inference_ms: float | None = None


def create_app(ws: WaveSpeed) -> FastAPI:
    """The app: its Client opens and closes with it, and all handlers share that Client."""
    app = FastAPI(title="wavespeed-async example", lifespan=ws.lifespan)
    app.include_router(ws.router)  # POST /wavespeed/webhook
    # A failed task answers 422 or 502 with its id and reason, an unknown id 404, bad input
    # 422, a rate limit 429 with Retry-After, a deadline 504 with the task id: no bare 500s.
    install_error_handlers(app)
    ClientDep = Annotated[Client, Depends(ws.get_client)]

    @app.post("/generate")
    async def generate(request: Request, body: GenerateRequest) -> TaskView:
        task = FluxKontextProTextToImage(
            prompt=body.prompt, aspect_ratio=body.aspect_ratio, seed=body.seed
        )
        # Submits with this app's webhook and wakes up when WaveSpeed delivers the result.
        # If the caller disconnects, the wait stops (the task still runs and is logged).
        pred = await ws.run(request, task, timeout=300)
        return TaskView(
            id=pred.id, status=pred.status, outputs=pred.outputs, inference_ms=pred.inference_ms
        )

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: str, client: ClientDep) -> TaskView:
        pred = await client.get_result(task_id)
        return TaskView(
            id=pred.id, status=pred.status, outputs=pred.outputs, inference_ms=pred.inference_ms
        )

    return app


#: For ``uvicorn fastapi_app:app`` (key from $WAVESPEED_API_KEY, webhooks to $PUBLIC_URL).
app = create_app(WaveSpeed(public_url=os.environ.get("PUBLIC_URL")))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"))
    parser.add_argument("--demo", action="store_true", help="make one request, print, stop")
    parser.add_argument("--prompt", default="A lighthouse on a rocky coast at dusk")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    return parser.parse_args(argv)


def bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets marked as TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def demo(url: str, prompt: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/generate", json={"prompt": prompt}) as resp,
    ):
        return {"http_status": resp.status, **await resp.json()}


async def serve(args: argparse.Namespace, client_kwargs: dict[str, Any]) -> dict[str, Any]:
    with bind(args.host, args.port) as sock:
        url = f"http://{args.host}:{sock.getsockname()[1]}"
        public_url = args.public_url or (url if "base_url" in client_kwargs else None)
        ws = WaveSpeed(public_url=public_url, **client_kwargs)
        log_level = "warning" if args.demo else "info"
        config = uvicorn.Config(create_app(ws), lifespan="on", log_level=log_level)
        server = uvicorn.Server(config)
        print(f"serving on {url}; webhooks: {ws.webhook_url or 'off (polling)'}", file=sys.stderr)
        if not args.demo:
            await server.serve(sockets=[sock])  # until Ctrl-C
            return {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            while not server.started:
                await anyio.sleep(0.01)
            try:
                result = dict(await demo(url, args.prompt))
            finally:
                server.should_exit = True
        return result


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.emulator and os.environ.get("WAVESPEED_API_KEY"):
        result = await serve(args, {})
        return 0 if not result or result["http_status"] == 200 else 1
    from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

    fast = args.latency == "fast"
    profile = LatencyProfile.fast() if fast else LatencyProfile.realistic()
    async with Emulator(EmulatorConfig(latency=profile)) as emu:
        print(f"emulator: {emu.base_url} (nothing is billed)", file=sys.stderr)
        kwargs: dict[str, Any] = {"api_key": "emulator-key", "base_url": emu.base_url}
        if fast:  # tasks take milliseconds: a fallback poll on that scale too
            kwargs["poll"] = PollConfig(expected_duration_s=0.03, min_interval_s=0.005)
        result = await serve(args, kwargs)
        if result and "id" in result:
            record = emu.task(result["id"])
            if record is not None:
                # How the result got back: by the webhook, not by polling.
                result["webhook_deliveries"] = record.webhook_deliveries
                result["polls"] = record.polls
    if result:
        print(json.dumps(result))
    return 0 if not result or result["http_status"] == 200 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
