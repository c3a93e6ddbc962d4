"""What the emulator saw, measured for the shared-limits tests."""

from __future__ import annotations

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
