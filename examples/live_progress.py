"""A page that shows a generation live: "queued -> running -> done", then the image.

Run it (from the project root; ``pip install "wavespeed-async[fastapi]" uvicorn``)::

    python examples/live_progress.py --emulator          # open http://127.0.0.1:8000

Type a prompt and press Generate: the page submits it (``POST /generate`` answers with the
task id at once) and opens an ``EventSource`` on ``/wavespeed/tasks/{id}/events``, the
event stream that ``WaveSpeed``'s router serves. Each event moves the steps along; the
``completed`` event carries the outputs, and the page shows the image. No polling loop in
JavaScript, and it works whichever worker process serves the stream.

As in every example, ``--emulator`` (or no ``$WAVESPEED_API_KEY``) runs against the
built-in emulator: nothing is billed; otherwise it uses the real API with the key from
``$WAVESPEED_API_KEY``, and each task is billed.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime.

import argparse
import asyncio
import os
import socket
import sys
from typing import Any, Final

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from wavespeed_async import FluxKontextProTextToImage, PollConfig, ValidationError
from wavespeed_async.fastapi import WaveSpeed

#: Scripts only from this app; images from wherever the outputs are (the API's storage).
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' https: http:; form-action 'self'; base-uri 'none'"
)

PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live progress</title>
<link rel="stylesheet" href="/page.css">
<script src="/page.js" defer></script>
</head>
<body>
<main>
  <h1>Generate an image</h1>
  <form id="form">
    <label for="prompt">Prompt</label>
    <input id="prompt" name="prompt" required maxlength="2000"
           value="A lighthouse on a rocky coast at dusk">
    <button id="go" type="submit">Generate</button>
  </form>
  <ol id="steps" aria-live="polite">
    <li data-step="queued">queued</li>
    <li data-step="running">running</li>
    <li data-step="done">done</li>
  </ol>
  <p id="message" role="status"></p>
  <figure><img id="image" alt="" hidden><figcaption id="caption"></figcaption></figure>
</main>
</body>
</html>
"""

STYLE: Final = """
body { font: 16px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
main { max-width: 40rem; }
input { width: 100%; padding: .4rem; margin: .3rem 0 .6rem; box-sizing: border-box; }
#steps { display: flex; gap: 1.5rem; list-style: none; padding: 0; }
#steps li { color: #aaa; }
#steps li.reached { color: #222; font-weight: 600; }
#steps li.reached::before { content: "\\2713 "; }
#message.error { color: #b00; }
img { max-width: 100%; margin-top: 1rem; }
"""

#: Text only goes into the page through textContent: nothing from a server becomes markup.
SCRIPT: Final = """
"use strict";
const $ = (id) => document.getElementById(id);
const STEP = { created: "queued", processing: "running", completed: "done" };
let source = null;

function reach(step) {
  for (const li of $("steps").children) {
    li.classList.add("reached");
    if (li.dataset.step === step) break;
  }
}

function say(text, error) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

function reset() {
  for (const li of $("steps").children) li.classList.remove("reached");
  $("image").hidden = true;
  $("image").removeAttribute("src");
  $("caption").textContent = "";
  say("", false);
}

function follow(id) {
  if (source) source.close();
  source = new EventSource(`/wavespeed/tasks/${encodeURIComponent(id)}/events`);
  const status = (e) => {
    const ev = JSON.parse(e.data);
    if (STEP[ev.status]) reach(STEP[ev.status]);
    say(`task ${ev.task_id}: ${ev.status || ev.kind}`, false);
  };
  for (const kind of ["created", "waiting", "status", "delivered"]) {
    source.addEventListener(kind, status);
  }
  source.addEventListener("completed", (e) => {
    const ev = JSON.parse(e.data);
    source.close();
    reach("done");
    say(`done in ${ev.duration_s == null ? "?" : ev.duration_s.toFixed(1)} s`, false);
    const url = ev.outputs.find((o) => typeof o === "string" && /^https?:/.test(o));
    if (url) {
      $("image").src = url;
      $("image").alt = $("prompt").value;
      $("image").hidden = false;
      $("caption").textContent = ev.task_id;
    }
    $("go").disabled = false;
  });
  for (const kind of ["failed", "unknown", "timeout"]) {
    source.addEventListener(kind, (e) => {
      const ev = JSON.parse(e.data);
      source.close();
      say(`${kind}: ${ev.error || ev.status || ""}`, true);
      $("go").disabled = false;
    });
  }
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) say("connection lost; reconnecting", true);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    reset();
    $("go").disabled = true;
    const resp = await fetch("/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: $("prompt").value }),
    });
    const body = await resp.json();
    if (!resp.ok) {
      say(body.detail || `HTTP ${resp.status}`, true);
      $("go").disabled = false;
      return;
    }
    reach("queued");
    follow(body.id);
  });
});
"""


class GenerateRequest(BaseModel):
    prompt: str


def create_app(ws: WaveSpeed) -> FastAPI:
    """The page, its script, ``POST /generate`` and WaveSpeed's router (webhook, events)."""
    app = FastAPI(title="wavespeed-async live progress", lifespan=ws.lifespan)
    app.include_router(ws.router)  # GET /wavespeed/tasks/{id}/events (and the webhook route)
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=headers)

    @app.get("/page.js")
    async def script() -> Response:
        return Response(SCRIPT, media_type="text/javascript", headers=headers)

    @app.get("/page.css")
    async def style() -> Response:
        return Response(STYLE, media_type="text/css", headers=headers)

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.post("/generate", response_model=None)
    async def generate(body: GenerateRequest) -> dict[str, Any] | JSONResponse:
        try:
            task = FluxKontextProTextToImage(prompt=body.prompt)
        except ValidationError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        # Answers as soon as the task exists: the page follows it on the event stream.
        # No webhook: a task with one is polled only as a fallback, and the page would
        # see it queued, then done; polled, it is seen running too.
        pred = await ws.client.submit(task)
        return {"id": pred.id}

    return app


#: For ``uvicorn live_progress:app`` (key from $WAVESPEED_API_KEY).
app = create_app(WaveSpeed())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--emulator", action="store_true", help="use the built-in emulator")
    parser.add_argument("--latency", choices=["realistic", "fast"], default="realistic")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, client_kwargs: dict[str, Any]) -> None:
    # IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets marked as TCP.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        url = f"http://{args.host}:{sock.getsockname()[1]}"
        ws = WaveSpeed(**client_kwargs)
        config = uvicorn.Config(create_app(ws), lifespan="on", log_level="warning")
        print(f"serving on {url}", file=sys.stderr, flush=True)
        await uvicorn.Server(config).serve(sockets=[sock])  # until Ctrl-C


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.emulator and os.environ.get("WAVESPEED_API_KEY"):
        await serve(args, {})
        return 0
    from wavespeed_async.emulator import Emulator, EmulatorConfig, LatencyProfile

    fast = args.latency == "fast"
    profile = LatencyProfile.fast() if fast else LatencyProfile.realistic()
    async with Emulator(EmulatorConfig(latency=profile)) as emu:
        print(f"emulator: {emu.base_url} (nothing is billed)", file=sys.stderr, flush=True)
        kwargs: dict[str, Any] = {"api_key": "emulator-key", "base_url": emu.base_url}
        if fast:  # tasks take milliseconds: polls on that scale too
            kwargs["poll"] = PollConfig(expected_duration_s=0.03, min_interval_s=0.005)
        await serve(args, kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
