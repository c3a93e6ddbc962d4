"""The Client's events: ``client.events()``, ``add_event_listener`` and ``is_waiting``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wavespeed_async._core.errors import ClientClosedError
from wavespeed_async._core.ids import check_task_id
from wavespeed_async._runtime.event_stream import (
    DEFAULT_EVENT_BUFFER,
    EventListener,
    EventStream,
)

if TYPE_CHECKING:
    from wavespeed_async._runtime.events import Events
    from wavespeed_async._runtime.waits import Waits

__all__ = ["EventListener", "Observing"]


class Observing:
    """The event calls of :class:`~wavespeed_async.Client`."""

    _events: Events
    _waits: Waits | None
    _closed: bool

    def events(
        self, task_id: str | None = None, *, buffer: int = DEFAULT_EVENT_BUFFER
    ) -> EventStream:
        """The Client's events from now on, as an async iterator with a bounded buffer.

        ::

            async with client.events() as events:
                async for ev in events:
                    print(ev.kind, ev.task_id, ev.index)

        Args:
            task_id: Only this task's events. The stream then starts with a ``status``
                event of the task's current status when this Client follows it already,
                and ends after the task's terminal event.
            buffer: Events held for a reader that is behind. Past it, the oldest are
                dropped, a :class:`DroppedEvent` event tells the reader how many, and
                ``stream.dropped`` counts them: memory never grows with a slow reader.

        Raises:
            ClientClosedError: the Client is closed.
            ValidationError: a bad ``task_id`` or ``buffer``.
        """
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        if task_id is not None:
            check_task_id(task_id)
        events = self._events
        stream = EventStream(buffer=buffer, task_id=task_id, clock=events.now)
        events.open_stream(stream)
        if task_id is not None:
            waits = self._waits
            snapshot = events.snapshot(task_id, waits.watching(task_id)[1] if waits else None)
            if snapshot is not None:
                stream.put(snapshot)
        return stream

    def add_event_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener(event)`` synchronously with every event from now on.

        Like ``Client(on_event=...)``: it must be quick (it runs inside the client's
        own steps) and may not await; an exception from it is logged once (then counted
        in :attr:`event_errors`) and changes nothing else.

        Returns:
            A function that removes the listener (idempotent).
        """
        return self._events.add_listener(listener)

    @property
    def event_errors(self) -> int:
        """Exceptions raised by event listeners (``on_event`` included) so far."""
        return self._events.listener_errors

    def is_waiting(self, task_id: str) -> bool:
        """Whether a :meth:`wait` (or :meth:`run`) for ``task_id`` is in progress here."""
        waits = self._waits
        return waits is not None and waits.watching(task_id)[0]
