"""What a RedisShare keeps in its own process: recent starts, and how fast the server is."""

from __future__ import annotations

from typing import Final

__all__ = ["Latency", "RecentStarts"]


class RecentStarts:
    """This process's starts within the window, oldest first, by its monotonic clock.

    What it tells a server that lost them (a restart) when it is back.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._at: dict[str, float] = {}  # member -> when; insertion order is time order

    def __len__(self) -> int:
        return len(self._at)

    def add(self, member: str, now: float) -> None:
        self._at.pop(member, None)  # counted again from now (its submit was answered)
        self._at[member] = now
        while True:  # forget what left the window (the newest never has)
            oldest = next(iter(self._at))
            if now - self._at[oldest] < self._window_s:
                break
            del self._at[oldest]

    def ages_ms(self, now: float) -> list[str | int]:
        """``member, age in ms`` pairs, flat, for the RESEED script."""
        pairs: list[str | int] = []
        for member, at in self._at.items():
            age = now - at
            if age < self._window_s:
                pairs += [member, int(age * 1000)]
        return pairs


class Latency:
    """How long the server's calls take, smoothed.

    One slow call (a pause of this process) is not a slow server; a few in a row are.
    """

    #: The weight of the newest call.
    ALPHA: Final = 0.3

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> float:
        """Count one call's duration; return the smoothed latency."""
        self.seconds += self.ALPHA * (seconds - self.seconds)
        return self.seconds

    def reset(self, seconds: float) -> None:
        self.seconds = seconds
