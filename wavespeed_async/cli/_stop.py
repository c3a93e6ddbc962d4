"""Stopping a batch: Ctrl-C in two stages, the grace period, and a fatal error.

The first SIGINT or SIGTERM stops submitting and gives the tasks in flight ``--grace``
seconds to end; a second one stops at once (a watchdog leaves the process if anything
still hangs: the journal is committed). An error that ends the whole batch (a refused
key) stops it at once too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import anyio
from anyio.abc import TaskGroup, TaskStatus

from wavespeed_async.cli._common import EXIT_INTERRUPTED
from wavespeed_async.cli._progress import Counters, Display

__all__ = ["Stop"]


class Stop:
    """Whether, why and how far a batch is stopping.

    ``event`` is set once no more jobs may start; ``work_scope`` (entered by the batch
    around its work) is cancelled when the work itself must end.
    """

    def __init__(self, counters: Counters, display: Display, grace_s: float) -> None:
        self.counters = counters
        self.display = display
        self.grace_s = grace_s
        self.event = anyio.Event()
        self.work_scope = anyio.CancelScope()
        #: The signal that interrupted the batch.
        self.interrupted: int | None = None
        #: Whether a second signal stopped it at once.
        self.aborted = False
        #: The error that ended the batch.
        self.fatal: BaseException | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    @property
    def outcome(self) -> str:
        """How the batch ended: ``stopped`` (fatal), ``interrupted`` or ``finished``."""
        if self.fatal is not None:
            return "stopped"
        return "interrupted" if self.interrupted is not None else "finished"

    def fail(self, exc: BaseException) -> None:
        """End the batch at once on an error that every further request would meet."""
        if self.fatal is None:
            self.fatal = exc
        self.event.set()
        self.work_scope.cancel()

    async def watch_signals(self, outer: TaskGroup, *, task_status: TaskStatus[None]) -> None:
        """Turn SIGINT and SIGTERM into a graceful stop, then (again) an immediate one."""
        if sys.platform == "win32":  # no signal receiver there: Ctrl-C raises instead
            task_status.started()
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.interrupted is None:
                    self.interrupted = signum
                    self.event.set()
                    c = self.counters
                    self.display.note(
                        f"interrupted: submitting no more jobs; waiting up to {self.grace_s:g} s "
                        f"for the {c.running + c.submitting} job(s) in flight. Press Ctrl-C "
                        "again to stop at once (nothing is lost: re-run the same command to "
                        "resume)."
                    )
                    outer.start_soon(self._grace)
                else:
                    self.display.note("stopping now")
                    self.aborted = True
                    self.work_scope.cancel()
                    # If anything still hangs, leave anyway: the journal is committed.
                    watchdog = threading.Timer(3.0, os._exit, args=(EXIT_INTERRUPTED,))
                    watchdog.daemon = True
                    watchdog.start()

    async def _grace(self) -> None:
        await anyio.sleep(self.grace_s)
        if not self.work_scope.cancel_called:
            c = self.counters
            self.display.note(
                f"grace period over: {c.running} task(s) still running are recorded in the "
                "journal; re-run the same command to collect them"
            )
            self.work_scope.cancel()
