"""FastAPI integration: one Client per app, and results pushed by WaveSpeed webhooks.

::

    from fastapi import FastAPI, Request
    from wavespeed_async.fastapi import WaveSpeed

    ws = WaveSpeed(public_url="https://myapp.example.com")   # key: $WAVESPEED_API_KEY
    app = FastAPI(lifespan=ws.lifespan)                      # opens / closes the Client
    app.include_router(ws.router)          # POST /wavespeed/webhook, GET .../tasks/{id}/events
    install_error_handlers(app)                              # errors -> 404, 422, 502, ...

Needs the ``fastapi`` extra: ``pip install "wavespeed-async[fastapi]"``. See
``docs/fastapi.md``.
"""

from wavespeed_async._core.install import install_command

try:
    import fastapi  # noqa: F401 - only checks that the extra is installed
except ImportError as _exc:
    raise ModuleNotFoundError(
        f"wavespeed_async.fastapi needs FastAPI ({_exc}); install it with: "
        f"{install_command('fastapi')}",
        name=_exc.name,
    ) from _exc

from wavespeed_async.fastapi._app import (
    CLIENT_CLOSED_STATUS,
    DEFAULT_WEBHOOK_PATH,
    ClientDisconnected,
    WaveSpeed,
    run_until_disconnected,
)
from wavespeed_async.fastapi.errors import (
    error_response,
    install_error_handlers,
    wavespeed_error_handler,
)
from wavespeed_async.fastapi.events import DEFAULT_EVENTS_PATH, TaskEventRoute

__all__ = [
    "CLIENT_CLOSED_STATUS",
    "DEFAULT_EVENTS_PATH",
    "DEFAULT_WEBHOOK_PATH",
    "ClientDisconnected",
    "TaskEventRoute",
    "WaveSpeed",
    "error_response",
    "install_error_handlers",
    "run_until_disconnected",
    "wavespeed_error_handler",
]
