"""FastAPI integration: one Client per app, and results pushed by WaveSpeed webhooks.

::

    from fastapi import FastAPI, Request
    from wavespeed_async.fastapi import WaveSpeed

    ws = WaveSpeed(public_url="https://myapp.example.com")   # key: $WAVESPEED_API_KEY
    app = FastAPI(lifespan=ws.lifespan)                      # opens / closes the Client
    app.include_router(ws.router)          # POST /wavespeed/webhook, GET .../tasks/{id}/events

Needs the ``fastapi`` extra: ``pip install "wavespeed-async[fastapi]"``. See
``docs/fastapi.md``.
"""

from wavespeed_async.fastapi._app import (
    CLIENT_CLOSED_STATUS,
    DEFAULT_WEBHOOK_PATH,
    ClientDisconnected,
    WaveSpeed,
    run_until_disconnected,
)
from wavespeed_async.fastapi.events import DEFAULT_EVENTS_PATH, TaskEventRoute

__all__ = [
    "CLIENT_CLOSED_STATUS",
    "DEFAULT_EVENTS_PATH",
    "DEFAULT_WEBHOOK_PATH",
    "ClientDisconnected",
    "TaskEventRoute",
    "WaveSpeed",
    "run_until_disconnected",
]
