"""Where Redis's clock stands against this process's monotonic clock, and how sure we are of it (pure).

Send times are booked on Redis's clock (`TIME` in cps.lua) and waited for on this host's. Each booking is a
sample: the script read Redis's clock at some moment between asking and hearing back, so the offset (Redis
time minus local time) lies in [redis_now - heard, redis_now - asked]. One sample alone is as wide as its
round trip, which on a host short of CPU is tens of milliseconds, and all of it counted as lateness.
Intersecting the samples, as NTP does, narrows it to the quickest round trip lately: the bound is kept,
widened by the most the clocks can drift apart since (MAX_DRIFT), and narrowed by every new sample. A
sample outside the bound means a clock was stepped (or Redis moved): the new sample alone is then the
bound. Never wrong, only as wide as the evidence: a send waits for the earliest local time its booked
instant can be, and counts the bound's width as lateness it may already have.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# How fast the two clocks can drift apart: Linux slews the real-time clock by at most 500 ppm, and the
# monotonic clock not at all.
MAX_DRIFT = 500e-6


@dataclass(frozen=True)
class OffsetBound:
    """Redis time minus local monotonic time lies within [lo, hi]."""

    lo: float
    hi: float

    @property
    def width(self) -> float:
        return self.hi - self.lo


class RedisClock:
    """The running bound of this process's offset to Redis, fed by every booking's round trip."""

    def __init__(self, max_drift: float = MAX_DRIFT) -> None:
        self._max_drift = max_drift
        self._bound: OffsetBound | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def observe(self, asked: float, redis_now: float, heard: float) -> OffsetBound:
        """Add one round trip (local times `asked` and `heard`, Redis's clock read between them); the
        bound now."""
        sample = OffsetBound(redis_now - heard, redis_now - asked)
        with self._lock:
            bound = self._bound
            if bound is not None:
                widen = self._max_drift * max(0.0, heard - self._at)
                lo, hi = max(bound.lo - widen, sample.lo), min(bound.hi + widen, sample.hi)
                sample = OffsetBound(lo, hi) if lo <= hi else sample  # disjoint: a clock was stepped
            self._bound, self._at = sample, heard
        return sample


REDIS_CLOCK = RedisClock()
