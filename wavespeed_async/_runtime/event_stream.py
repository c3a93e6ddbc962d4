"""Who is told a Client's events: listeners, and ``client.events()`` streams (bounded)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.events import DroppedEvent, Event

__all__ = ["DEFAULT_EVENT_BUFFER", "EventListener", "EventStream", "Subscribers"]

log = logging.getLogger("wavespeed_async")

#: Called synchronously with each event.
EventListener = Callable[[Event], object]

#: Events an ``events()`` stream holds for a reader that is behind, unless told otherwise.
DEFAULT_EVENT_BUFFER: Final = 1000


class EventStream:
    """The events of a Client (or of one task), as they happen: ``client.events()``.

    ::

        async with client.events() as events:
            async for ev in events:
                print(ev.kind, ev.task_id)

    It receives events from the moment it is made. Its buffer is bounded: a reader that
    falls more than ``buffer`` events behind loses the oldest ones, and is told so by a
    :class:`DroppedEvent` event (``count`` of them) where they were; :attr:`dropped` counts them
    all. Memory never grows with a slow reader.

    The iteration ends when :meth:`close` is called (``async with`` calls it), when the
    Client closes (after what is buffered), or, for a stream of one task, after that task's
    terminal event. A stream no longer referenced stops receiving by itself.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_clock",
        "_closed",
        "_ended",
        "_gap",
        "_gap_at",
        "_unsubscribe",
        "_waiter",
        "buffer",
        "dropped",
        "task_id",
    )

    def __init__(
        self,
        *,
        buffer: int,
        task_id: str | None,
        clock: Callable[[], tuple[float, float]],
    ) -> None:
        if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1:
            raise ValidationError("buffer", f"buffer: {buffer!r}; allowed: an integer >= 1")
        #: The most events held for the reader.
        self.buffer = buffer
        #: Only this task's events (``None``: every event of the Client).
        self.task_id = task_id
        #: Events dropped because the reader was behind, since the stream was made.
        self.dropped = 0
        self._buffer: deque[Event] = deque(maxlen=buffer)
        self._clock = clock
        self._gap = 0
        self._gap_at = (0.0, 0.0)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False  # closed by its reader: nothing more is handed out
        self._ended = False  # nothing more will come in: end after the buffer
        self._unsubscribe: Callable[[], None] | None = None

    def __repr__(self) -> str:
        what = "all tasks" if self.task_id is None else f"task {self.task_id}"
        state = "closed" if self._closed else ("ended" if self._ended else "open")
        return (
            f"<EventStream {what} {state} buffered={len(self._buffer)}/{self.buffer} "
            f"dropped={self.dropped}>"
        )

    # -- the emitter's side ---------------------------------------------------------------

    def put(self, event: Event) -> None:
        """Take one event (dropping the oldest held one if the buffer is full)."""
        if self._ended:
            return
        buf = self._buffer
        if len(buf) == self.buffer:
            if not self._gap:
                self._gap_at = self._clock()
            self._gap += 1
            self.dropped += 1
        buf.append(event)  # a full deque drops its oldest item
        if self.task_id is not None and event.terminal:
            self._ended = True  # the task's stream ends with its end
            self._detach()
        self._wake()

    def end(self) -> None:
        """Nothing more will come (the Client closed): end after what is buffered."""
        self._ended = True
        self._detach()
        self._wake()

    def attach(self, unsubscribe: Callable[[], None]) -> None:
        """Called by the emitter that feeds this stream: how to stop it."""
        self._unsubscribe = unsubscribe

    def _detach(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the reader's side ----------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving, and end the iteration at once (what is buffered is dropped)."""
        self._closed = True
        self._ended = True
        self._buffer.clear()
        self._gap = 0
        self._detach()
        self._wake()

    async def aclose(self) -> None:
        """:meth:`close`, for code that closes async iterators with ``await it.aclose()``."""
        self.close()

    def get_nowait(self) -> Event | None:
        """The next event if one is buffered, else ``None``.

        After a gap, a :class:`DroppedEvent` comes first.
        """
        if self._gap:
            count, self._gap = self._gap, 0
            at, wall = self._gap_at
            return DroppedEvent(at=at, time=wall, count=count, task_id=self.task_id)
        if self._buffer:
            return self._buffer.popleft()
        return None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            event = self.get_nowait()
            if event is not None:
                return event
            if self._ended:
                raise StopAsyncIteration
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Subscribers:
    """Who is told a Client's events: listeners (called synchronously) and streams.

    ``active`` is true while there is any; a stream that is no longer referenced is
    forgotten by itself (held by a weak reference).
    """

    __slots__ = (
        "_by_task",
        "_keys",
        "_listeners",
        "_logged",
        "_streams",
        "active",
        "listener_errors",
    )

    def __init__(self) -> None:
        self.active = False
        self._listeners: list[EventListener] = []
        self._streams: dict[int, weakref.ref[EventStream]] = {}
        self._by_task: dict[str, dict[int, weakref.ref[EventStream]]] = {}
        self._keys = itertools.count()
        self._logged: set[int] = set()
        #: Exceptions raised by listeners (each listener's first is logged).
        self.listener_errors = 0

    @property
    def streams(self) -> int:
        """Open ``events()`` streams."""
        return len(self._streams) + sum(len(s) for s in self._by_task.values())

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns what removes it."""
        if not callable(listener):
            raise TypeError(f"an event listener is a callable, not {type(listener).__name__}")
        self._listeners.append(listener)
        self.active = True

        def remove() -> None:
            try:
                self._listeners.remove(listener)
            except ValueError:
                return
            self._update()

        return remove

    def open_stream(self, stream: EventStream) -> None:
        """Feed ``stream`` (of every task, or of ``stream.task_id``) from now on."""
        key = next(self._keys)
        task_id = stream.task_id
        table = self._streams if task_id is None else self._by_task.setdefault(task_id, {})

        def forget(_: object = None) -> None:
            if table.pop(key, None) is not None:
                if task_id is not None and not table and self._by_task.get(task_id) is table:
                    del self._by_task[task_id]
                self._update()

        table[key] = weakref.ref(stream, forget)
        stream.attach(forget)
        self.active = True

    def close(self) -> None:
        """The Client closed: end every stream (after what each holds)."""
        for table in [self._streams, *self._by_task.values()]:
            for ref in list(table.values()):
                stream = ref()
                if stream is not None:
                    stream.end()
        self._streams.clear()
        self._by_task.clear()
        self._update()

    def _update(self) -> None:
        self.active = bool(self._listeners or self._streams or self._by_task)
        if not self.active:
            self._idle()

    def _idle(self) -> None:
        """No listener and no stream is left (what is kept for them may go)."""

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every listener and stream.

        A listener's exception is logged once, counted, and changes nothing else.
        """
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                if id(listener) not in self._logged:
                    self._logged.add(id(listener))
                    log.exception(
                        "an event listener raised on a %s event; the client goes on, and "
                        "further errors of this listener are counted, not logged",
                        event.kind,
                        extra={"task_id": event.task_id} if event.task_id else None,
                    )
        for ref in list(self._streams.values()):
            stream = ref()
            if stream is not None:
                stream.put(event)
        task_id = event.task_id
        if task_id is not None and self._by_task:
            table = self._by_task.get(task_id)
            if table:
                for ref in list(table.values()):
                    stream = ref()
                    if stream is not None:
                        stream.put(event)
