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
    counted_at: float  # the instant the last admitted arrival was counted at

    def set_rate(self, rate: float, now: float) -> None: ...
    def try_take(self, n: int, now: float) -> float: ...


class TokenBucket:
    """Capacity = rate (one second of burst), refilling at `rate` per second.

    A request of n tokens is admitted when the bucket holds n; a request larger than the capacity is
    admitted only from a full bucket and leaves it in debt (a carrier queues a big bulk request and
    paces it), so the next request waits until the debt is paid back. An arrival counted after a later
    one is counted at the later one's instant (a bucket has no history to place it in).
    """

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = now
        self.counted_at = now

    def _refill(self, now: float) -> None:
        now = max(now, self.stamp)
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = float(rate)
        self.tokens = min(self.tokens, self.rate)

    def try_take(self, n: int, now: float) -> float:
        """Take n tokens and return 0.0, or take nothing and return the seconds to wait."""
        now = max(now, self.stamp)
        self._refill(now)
        need = min(float(n), self.rate)
        if self.tokens + 1e-9 >= need:
            self.tokens -= n
            self.counted_at = now
            return 0.0
        return (need - self.tokens) / self.rate if self.rate > 0 else math.inf


# Seconds of arrivals kept behind the window, so an arrival counted after later ones (its handler ran late,
# its process starved of CPU) can still be placed at its own instant and every window holding it checked.
HISTORY = 5.0


class Arrivals:
    """Arrival instants (time, n) in time order: `recent` those inside the window of the latest instant
    seen, (edge - 1, ...], with `count` their sum; `older` those up to HISTORY seconds behind it.

    Arrivals are stamped when their bytes reached the host but counted when their handler runs, so they
    are not counted in time order: one counted behind `edge` is inserted at its own instant (never moved
    to a later one, which would hide it from the windows it really fell in), and `busiest_with` checks
    every 1-second window that holds it."""

    __slots__ = ("recent", "older", "count", "edge")

    def __init__(self) -> None:
        self.recent: deque[tuple[float, int]] = deque()
        self.older: deque[tuple[float, int]] = deque()
        self.count = 0
        self.edge = -math.inf

    @property
    def floor(self) -> float:
        """The earliest instant an arrival can still be placed at (older ones are counted here)."""
        return self.edge - HISTORY

    def advance(self, now: float) -> None:
        """Move the window to `now` (not before `edge`): arrivals that leave it are kept as history."""
        self.edge = now
        recent, older = self.recent, self.older
        while recent and recent[0][0] <= now - 1.0:
            entry = recent.popleft()
            self.count -= entry[1]
            older.append(entry)
        horizon = now - 1.0 - HISTORY
        while older and older[0][0] <= horizon:
            older.popleft()

    def insert(self, at: float, n: int) -> None:
        """Record n arrivals at `at` (not before `floor`) in time order."""
        if at > self.edge - 1.0:
            target = self.recent
            self.count += n
        else:
            target = self.older
        i = len(target)
        while i and target[i - 1][0] > at:  # a late arrival lands near the end: scan from there
            i -= 1
        target.insert(i, (at, n))

    def busiest_with(self, at: float, n: int) -> int:
        """The most arrivals in any 1-second window (t - 1, t] that holds `at`, with n more at `at`.
        Those windows end in [at, at + 1); a window's count only rises where an arrival enters it, so
        the busiest ends at `at` or at one of the arrivals after it."""
        near: list[tuple[float, int]] = []
        for entries in (self.recent, self.older):
            for entry in reversed(entries):
                if entry[0] <= at - 1.0:
                    break
                if entry[0] < at + 1.0:
                    near.append(entry)
            else:
                continue
            break
        near.reverse()
        best = total = lo = hi = 0
        for end in [at, *(t for t, _ in near if t > at)]:
            while hi < len(near) and near[hi][0] <= end:
                total += near[hi][1]
                hi += 1
            while lo < hi and near[lo][0] <= end - 1.0:
                total -= near[lo][1]
                lo += 1
            best = max(best, total)
        return best + n


class SlidingWindow:
    """At most floor(rate) arrivals in any 1-second window (t - 1, t]: the strict rule a carrier that counts
    arrivals applies. Nothing refills early: a second that saw the whole budget admits nothing more until
    its first arrival is a full second old. A bulk larger than the budget is admitted only into an empty
    window, and (as a carrier queues it and dials it at the CPS) fills one whole window per budget's worth
    of it: 20 at 8 CPS holds the windows of now, now + 1 s and (4 of 8) now + 2 s.

    An arrival counted after a later one (see Arrivals) is admitted only if every window holding its own
    instant stays within the budget; `counted_at` is the instant the last admitted arrival was counted at
    (its own, except past HISTORY or for a late oversized bulk, which count at the latest instant seen)."""

    __slots__ = ("rate", "arrivals", "counted_at")

    def __init__(self, rate: float, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.arrivals = Arrivals()
        self.counted_at = now

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.rate + 1e-9))

    def set_rate(self, rate: float, now: float) -> None:
        self.rate = float(rate)

    def try_take(self, n: int, now: float) -> float:
        """Admit n arrivals at `now` and return 0.0, or admit nothing and return the seconds until n fit."""
        arrivals = self.arrivals
        cap = self.capacity
        if now < arrivals.edge and n <= cap:
            at = max(now, arrivals.floor)
            if arrivals.busiest_with(at, n) <= cap:
                arrivals.insert(at, n)
                self.counted_at = at
                return 0.0
            return self._wait(n, arrivals.edge) + arrivals.edge - at
        now = max(now, arrivals.edge)
        arrivals.advance(now)
        if arrivals.count + n <= cap:
            arrivals.insert(now, n)
            self.counted_at = now
            return 0.0
        if n > cap and arrivals.count == 0:
            for second in range(math.ceil(n / cap)):
                arrivals.insert(now + second, min(cap, n - second * cap))
            self.counted_at = now
            return 0.0
        return self._wait(n, now)

    def _wait(self, n: int, now: float) -> float:
        """Seconds from `now` until enough of the oldest arrivals leave the window (all of them for an
        oversized bulk) for n more to fit."""
        arrivals = self.arrivals
        cap = self.capacity
        excess = arrivals.count + n - cap if n <= cap else arrivals.count
        freed = 0
        for stamp, k in arrivals.recent:
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
    """The most events seen in any 1-second window (t-1, t], kept exactly even when events are added out
    of time order (a late-counted arrival: see Arrivals)."""

    __slots__ = ("arrivals", "max")

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self.max = 0

    def add(self, now: float, n: int = 1) -> None:
        arrivals = self.arrivals
        if now >= arrivals.edge:
            arrivals.advance(now)
            arrivals.insert(now, n)
            busiest = arrivals.count
        else:
            at = max(now, arrivals.floor)
            busiest = arrivals.busiest_with(at, n)
            arrivals.insert(at, n)
        if busiest > self.max:
            self.max = busiest


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
