"""Per-account carrier limits: a CPS token bucket, a live-call count, and the strict 1-second window
measurement the ledger reports. Pure arithmetic on a monotonic clock passed in."""

from __future__ import annotations

import math
from collections import deque


class TokenBucket:
    """Capacity = rate (one second of burst), refilling at `rate` per second.

    A request of n tokens is admitted when the bucket holds n; a request larger than the capacity is
    admitted only from a full bucket and leaves it in debt (a carrier queues a big bulk request and
    paces it), so the next request waits until the debt is paid back.
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = float(rate)
        self.tokens = min(self.tokens, self.rate)

    def try_take(self, n: int, now: float) -> float:
        """Take n tokens and return 0.0, or take nothing and return the seconds to wait."""
        self._refill(now)
        need = min(float(n), self.rate)
        if self.tokens + 1e-9 >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate if self.rate > 0 else math.inf


class WindowMax:
    """The most events seen in any 1-second window (t-1, t], kept exactly with a deque of stamps."""

    __slots__ = ("stamps", "count", "max")

    def __init__(self) -> None:
        self.stamps: deque[tuple[float, int]] = deque()
        self.count = 0
        self.max = 0

    def add(self, now: float, n: int = 1) -> None:
        stamps = self.stamps
        while stamps and stamps[0][0] <= now - 1.0:
            self.count -= stamps.popleft()[1]
        stamps.append((now, n))
        self.count += n
        if self.count > self.max:
            self.max = self.count


class Pacer:
    """Placement times at `rate` per second: the carrier dials queued destinations no faster."""

    __slots__ = ("rate", "next_at")

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.next_at = 0.0

    def next_slot(self, now: float) -> float:
        at = max(now, self.next_at)
        self.next_at = at + (1.0 / self.rate if self.rate > 0 else 0.0)
        return at
