"""The batch's live progress: a rich progress bar on a terminal, plain lines elsewhere.

``rich`` (the ``cli`` extra) is imported here only, and only when a terminal shows the
bar; without it, or when stderr is not a terminal (CI, pipes, tests), a plain one-line
status is printed every few seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

__all__ = ["Counters", "Display", "make_display"]

#: Seconds between plain status lines when stderr is not a terminal.
PLAIN_INTERVAL_S: Final = 5.0
#: The bar's colour of each way a job ends (others: yellow, not finished).
_STYLE: Final = {"ok": "green", "failed": "red", "invalid": "red"}


@dataclass(slots=True)
class Counters:
    """What a batch is doing, updated as it goes; read by the display.

    ``queued``: jobs still to submit in this run; ``submitting``: submits under way;
    ``running``: tasks created and not ended (resumed ones too); ``completed``,
    ``failed``: ended (including those finished in an earlier run); ``invalid``: lines
    that cannot run; ``unknown``: submits whose outcome is unknown (held back);
    ``incomplete``: tasks that did not end in this run (re-run to collect them);
    ``held_back``: jobs held back by ``--max-spend`` or refused for want of money (nothing
    created; re-run to submit them); ``spend``: the budget's ``$spent / $budget``, when set.
    """

    total: int = 0
    queued: int = 0
    submitting: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    unknown: int = 0
    incomplete: int = 0
    saving: int = 0
    skipped: int = 0
    submitted: int = 0
    resumed: int = 0
    started: float = field(default_factory=time.monotonic)
    ended_this_run: int = 0
    held_back: int = 0
    spend: Callable[[], str] | None = None

    @property
    def done(self) -> int:
        """Jobs that ended, whichever way (what the bar counts)."""
        return (
            self.completed
            + self.failed
            + self.invalid
            + self.unknown
            + self.incomplete
            + self.held_back
        )

    def ended(self) -> list[tuple[str, int]]:
        """How the ended jobs ended, in the summary's words.

        Ok and failed always, the others when there are some. The bar and the plain lines
        both show these.
        """
        parts = [("ok", self.completed), ("failed", self.failed)]
        for label, n in (
            ("invalid", self.invalid),
            ("unknown", self.unknown),
            ("incomplete", self.incomplete),
            ("held back", self.held_back),
        ):
            if n:
                parts.append((label, n))
        return parts

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate_per_s(self) -> float:
        elapsed = self.elapsed_s
        return self.ended_this_run / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate_per_s
        if rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def line(self) -> str:
        """``12/40 ended (9 ok, 1 failed, 2 invalid); 8 running, 20 queued; 3.10/s, ETA 9 s``."""
        eta = self.eta_s
        eta_text = f", ETA {eta:.0f} s" if eta is not None and self.done < self.total else ""
        ended = ", ".join(f"{n} {label}" for label, n in self.ended())
        spend = f"; {self.spend()}" if self.spend is not None else ""
        return (
            f"{self.done}/{self.total} ended ({ended}); "
            f"{self.running} running, {self.queued + self.submitting} queued; "
            f"{self.rate_per_s:.2f}/s{eta_text}{spend}"
        )


class Display(Protocol):
    def start(self) -> None: ...
    def refresh(self) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


class _Silent:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def start(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def note(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def stop(self) -> None:
        pass


class _Plain(_Silent):
    """A status line every few seconds, for logs."""

    def __init__(self, counters: Counters, interval_s: float = PLAIN_INTERVAL_S) -> None:
        super().__init__(counters)
        self.interval_s = interval_s
        self._last = 0.0

    def start(self) -> None:
        self._last = time.monotonic()

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._status()

    def stop(self) -> None:
        self._status()  # how it ended, whatever the interval: a log shows the last state

    def _status(self) -> None:
        self.note(f"[{self.counters.elapsed_s:6.1f} s] {self.counters.line()}")


class _Rich:
    """A rich progress bar on stderr."""

    def __init__(self, counters: Counters) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            Task,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task: Task) -> Text:
                speed = task.speed
                text = f"{speed:.1f}/s" if speed else "-/s"
                return Text(text, style="progress.data.speed")

        self.counters = counters
        self.console = Console(stderr=True)
        # Fits in 80 columns.
        self.progress = Progress(
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn(
                "[cyan]{task.fields[queued]} queued[/] "
                "[yellow]{task.fields[running]} running[/] "
                "{task.fields[ended]}"
            ),
            TextColumn("{task.fields[spend]}"),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            console=self.console,
            refresh_per_second=8,
        )
        self.task = self.progress.add_task(
            "batch", total=counters.total, completed=counters.done, **self._fields()
        )

    def _fields(self) -> dict[str, Any]:
        c = self.counters
        return {
            "queued": c.queued + c.submitting,
            "running": c.running,
            "ended": " ".join(
                f"[{_STYLE.get(label, 'yellow')}]{n} {label}[/]" for label, n in c.ended()
            ),
            "spend": c.spend() if c.spend is not None else "",
        }

    def start(self) -> None:
        self.progress.start()

    def refresh(self) -> None:
        c = self.counters
        self.progress.update(self.task, total=c.total, completed=c.done, **self._fields())

    def note(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        self.refresh()
        self.progress.stop()


def make_display(counters: Counters, *, quiet: bool) -> Display:
    """The right display for this terminal: rich bar, plain lines, or nothing (quiet)."""
    if quiet:
        return _Silent(counters)
    if sys.stderr.isatty():
        try:
            return _Rich(counters)
        except ImportError:  # installed without the "cli" extra
            pass
    return _Plain(counters)
