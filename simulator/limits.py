"""Per-account carrier limits: the CPS admission rule (a strict sliding 1-second window of arrivals, as an
independent carrier counts them, or the older token bucket), the arrival jitter of the network in front
of it, and the strict 1-second window measurement the ledger reports. Pure arithmetic on a clock passed in."""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Protocol


class CpsLimit(Protocol):
    """What the carrier asks of a CPS rule: admit n arrivals now, or say how long until they could be."""

    rate: float

    def set_rate(self, rate: float, now: float) -> None: ...
    def try_take(self, n: int, now: float) -> float: ...


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


class SlidingWindow:
    """At most floor(rate) arrivals in any 1-second window (t - 1, t]: the strict rule a carrier that counts
    arrivals applies. Nothing refills early: a second that saw the whole budget admits nothing more until
    its first arrival is a full second old. A bulk larger than the budget is admitted only into an empty
    window, and (as a carrier queues it and dials it at the CPS) fills one whole window per budget's worth
    of it: 20 at 8 CPS holds the windows of now, now + 1 s and (4 of 8) now + 2 s."""

    __slots__ = ("rate", "stamps", "count")

    def __init__(self, rate: float, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.stamps: deque[tuple[float, int]] = deque()
        self.count = 0  # every entry in `stamps`, including the future windows of a queued bulk

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.rate + 1e-9))

    def set_rate(self, rate: float, now: float) -> None:
        self.rate = float(rate)

    def _expire(self, now: float) -> None:
        stamps = self.stamps
        while stamps and stamps[0][0] <= now - 1.0:
            self.count -= stamps.popleft()[1]

    def try_take(self, n: int, now: float) -> float:
        """Admit n arrivals at `now` and return 0.0, or admit nothing and return the seconds until n fit."""
        self._expire(now)
        cap = self.capacity
        if self.count + n <= cap:
            self.stamps.append((now, n))
            self.count += n
            return 0.0
        if n > cap and self.count == 0:
            for second in range(math.ceil(n / cap)):
                self.stamps.append((now + second, min(cap, n - second * cap)))
            self.count += n
            return 0.0
        # Wait until enough of the oldest arrivals leave the window (all of them for an oversized bulk).
        excess = self.count + n - cap if n <= cap else self.count
        freed = 0
        for stamp, k in self.stamps:
            freed += k
            if freed >= excess:
                return max(1e-6, stamp + 1.0 - now)
        return 1.0  # unreachable: the window holds more than the excess


def make_cps_limit(kind: str, rate: float, now: float) -> CpsLimit:
    """The CPS rule named in the config: "sliding_window" (strict, the default) or "token_bucket"."""
    if kind == "token_bucket":
        return TokenBucket(rate, now)
    return SlidingWindow(rate, now)


def arrival_delay(rng: random.Random, mean_ms: float, spread_ms: float) -> float:
    """Seconds a request spends in the network before the carrier's limiter sees it: uniform in
    mean ± spread milliseconds, never negative. Arrivals are counted after it, so sends booked a few ms
    apart may arrive closer together, as on a real network."""
    if mean_ms <= 0 and spread_ms <= 0:
        return 0.0
    return max(0.0, rng.uniform(mean_ms - spread_ms, mean_ms + spread_ms)) / 1000.0


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
