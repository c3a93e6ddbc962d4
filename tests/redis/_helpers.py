"""What the emulator saw, measured for the shared-limits tests; a slow server, in process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc

from wavespeed_async.emulator import EmulatorStats


def peak_in_flight(stats: EmulatorStats) -> int:
    """The most tasks that were created and not yet finished at one moment."""
    events: list[tuple[float, int]] = []
    for t in stats.tasks.values():
        events.append((t.created_at, 1))
        if t.finished_at is not None:
            events.append((t.finished_at, -1))
    peak = level = 0
    for _, step in sorted(events):  # at a tie, an end (-1) sorts before a start (+1)
        level += step
        peak = max(peak, level)
    return peak


class SlowProxy:
    """A TCP proxy that holds every chunk a client sends for ``delay_s``.

    ``delay_s`` can be changed while it runs: a server that answers slowly, in process.
    """

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _pipe(self, src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream, slow: bool) -> None:
        try:
            async for chunk in src:
                if slow and self.delay_s:
                    await anyio.sleep(self.delay_s)
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            await dst.aclose()

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as server:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pipe, client, server, True)
                tg.start_soon(self._pipe, server, client, False)


@contextlib.asynccontextmanager
async def slow_proxy(target_port: int, delay_s: float) -> AsyncIterator[SlowProxy]:
    """Run a :class:`SlowProxy` on a free loopback port for the duration of the block."""
    proxy = SlowProxy(target_port, delay_s)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._serve)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
