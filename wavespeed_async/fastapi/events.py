"""Live progress for browsers: ``GET /wavespeed/tasks/{task_id}/events``, Server-Sent Events.

The route streams one task's events (:mod:`wavespeed_async._core.events`) as they happen,
and ends with the task's terminal event: ``completed`` (with its ``outputs``), ``failed``
(with its ``error``), ``unknown`` or ``timeout``. Each event is one SSE message: ``event:``
is its kind, ``data:`` its JSON (``kind``, ``task_id``, ``status``, ...)::

    const es = new EventSource(`/wavespeed/tasks/${id}/events`);
    es.addEventListener("status", (e) => show(JSON.parse(e.data).status));
    es.addEventListener("completed", (e) => { es.close(); render(JSON.parse(e.data).outputs); });

It works in whichever worker process the request reaches. When a wait in this process
follows the task (a handler's ``ws.run``), the stream shows that wait's events; when
nothing here waits for it (it was submitted by another worker, or by a handler that
answered at once), the route follows it itself with ``client.wait``: by polling, and, with
a ``share``, woken by a webhook delivery that reached any worker. If the wait it relied on
stops early (its handler's client left), it takes over the following.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from wavespeed_async._core.errors import NotFoundError, ValidationError, WaveSpeedError
from wavespeed_async._core.events import Event
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._core.models import Prediction
from wavespeed_async._facade.tasks import UNSET
from wavespeed_async._runtime.event_stream import EventStream

if TYPE_CHECKING:
    from wavespeed_async._facade.client import Client

__all__ = ["DEFAULT_EVENTS_PATH", "DEFAULT_MAX_EVENT_STREAMS", "TaskEventRoute"]

log = logging.getLogger("wavespeed_async.fastapi")

#: Where :attr:`WaveSpeed.router` streams a task's events, unless told otherwise.
DEFAULT_EVENTS_PATH: Final = "/wavespeed/tasks/{task_id}/events"
#: Streams open at once at most; more are answered 503 (each may follow a task itself).
DEFAULT_MAX_EVENT_STREAMS: Final = 1000
#: Seconds between keep-alive comments while nothing happens (proxies close idle streams).
HEARTBEAT_S: Final = 15.0
#: Ends of a follow that are not the task's own: another wait stopped, the task goes on.
_NOT_THE_TASKS_END: Final = frozenset({"timeout", "abandoned"})
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    # nginx buffers responses by default; an event stream must reach the browser at once.
    "X-Accel-Buffering": "no",
}


def encode_event(event: Event, number: int) -> bytes:
    """One Server-Sent Events message: ``id``, ``event`` (the kind) and ``data`` (JSON)."""
    data = msgspec.json.encode(event)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (number, event.kind.encode(), data)


class TaskEventRoute:
    """The event-stream route of a ``WaveSpeed`` (made by it; not built directly).

    Args:
        client: Returns the app's Client (``ClientClosedError`` when it is not running).
        path: The route's path.
        max_streams: Streams open at once at most.
        timeout_s: How long the route follows a task itself (default: the Client's
            ``timeouts.task_s``); then the stream ends with ``timeout``.
        heartbeat_s: Seconds between keep-alive comments while nothing happens.

    Attributes:
        path: The route's path (with ``{task_id}``).
        max_streams: Streams open at once at most (more are answered 503).
        open_streams: Streams open now.
        streams_served: Streams opened since the start.
    """

    def __init__(
        self,
        client: Callable[[], Client],
        *,
        path: str,
        max_streams: int = DEFAULT_MAX_EVENT_STREAMS,
        timeout_s: float | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if "{task_id}" not in path or not path.startswith("/"):
            raise ValidationError(
                "events_path", f"events_path: {path!r}; allowed: a path with {{task_id}} in it"
            )
        if not isinstance(max_streams, int) or max_streams < 1:
            raise ValidationError(
                "max_event_streams", f"max_event_streams: {max_streams!r}; allowed: >= 1"
            )
        if not (math.isfinite(heartbeat_s) and heartbeat_s > 0):
            raise ValidationError("heartbeat_s", f"heartbeat_s: {heartbeat_s!r}; allowed: > 0")
        self._client = client
        self.path = path
        self.max_streams = max_streams
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.open_streams = 0
        self.streams_served = 0

    def add_to(self, router: APIRouter, dependencies: Sequence[Any] = ()) -> None:
        """Add ``GET path`` to ``router`` (``dependencies``: e.g. your authentication)."""
        router.add_api_route(
            self.path,
            self.handle,
            methods=["GET"],
            dependencies=list(dependencies),
            response_model=None,
            include_in_schema=False,
        )

    async def handle(self, task_id: str, request: Request) -> Response:
        """Answer one request: 404 for an unknown task, else the stream of its events."""
        try:
            check_task_id(task_id)
        except ValidationError:
            return JSONResponse({"detail": "not a task id"}, status_code=404)
        if self.open_streams >= self.max_streams:
            return JSONResponse(
                {"detail": "too many event streams open; try again later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        try:
            client: Client = self._client()
        except WaveSpeedError:
            return JSONResponse({"detail": "the app is not running"}, status_code=503)
        # Subscribed before anything else, so that nothing is missed from here on.
        stream = client.events(task_id)
        last: Prediction | None = None
        if not client.is_waiting(task_id):
            try:
                last = await client.get_result(task_id)
            except NotFoundError:
                stream.close()
                return JSONResponse({"detail": "no such task"}, status_code=404)
            except WaveSpeedError as exc:
                stream.close()
                log.warning(
                    "event stream of task %s: cannot read the task: %s",
                    task_id,
                    exc,
                    extra={"task_id": task_id},
                )
                return JSONResponse({"detail": "the task cannot be read now"}, status_code=502)
        return _EventStreamResponse(self, client, task_id, stream, last)


class _EventStreamResponse(Response):
    """Streams one task's events until its end, or until the browser leaves."""

    media_type = "text/event-stream"

    def __init__(
        self,
        route: TaskEventRoute,
        client: Client,
        task_id: str,
        stream: EventStream,
        last: Prediction | None,
    ) -> None:
        # Not Response.__init__: it would declare a Content-Length of the empty body.
        self.status_code = 200
        self.background = None
        self.init_headers(_HEADERS)
        self._route = route
        self._client = client
        self._task_id = task_id
        self._stream = stream
        self._last = last
        self._sent = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route
        route.open_streams += 1
        route.streams_served += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                follow = self._last is not None
                if follow:
                    tg.start_soon(self._follow, self._last)
                try:
                    await self._relay(send, tg, following=follow)
                finally:
                    tg.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the browser left while a message was being sent
        finally:
            self._stream.close()
            route.open_streams -= 1

    async def _relay(self, send: Send, tg: anyio.abc.TaskGroup, *, following: bool) -> None:
        """Send every event of the stream; at the task's end, stop."""
        stream = self._stream
        while True:
            event: Event | None = None
            with anyio.move_on_after(self._route.heartbeat_s):
                event = await anext(stream, None)
                if event is None:
                    return  # the Client closed
            if event is None:
                await self._send(send, b": keep-alive\n\n")
                continue
            if event.terminal and event.kind in _NOT_THE_TASKS_END and not following:
                # The wait this stream relied on stopped; the task goes on: follow it here.
                stream = self._stream = self._client.events(self._task_id)
                following = True
                tg.start_soon(self._follow, None)
                continue
            self._sent += 1
            await self._send(send, encode_event(event, self._sent))
            if event.terminal:
                return

    async def _follow(self, last: Prediction | None) -> None:
        """Follow the task in this process (its events reach the stream)."""
        timeout = self._route.timeout_s
        # However it ends, the end is told as an event (failed, timeout).
        with contextlib.suppress(Exception):
            await self._client.wait(
                last if last is not None else self._task_id,
                timeout=UNSET if timeout is None else timeout,
            )

    @staticmethod
    async def _send(send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})

    @staticmethod
    async def _watch(receive: Receive, scope: anyio.CancelScope) -> None:
        """End the response when the browser leaves (the ASGI ``http.disconnect``)."""
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
