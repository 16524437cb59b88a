"""Each account's recent request results in Redis, shared by every worker: the counts the circuit breaker
judges (campaigns.circuit_rules.trips). Failures are counted at once; successes, which are most requests,
are added up in the process and written at most once a second (and with any failure), so a healthy account
costs the send path one Redis call a second, not one per request.

Losing these counts (Redis restarted or flushed) only restarts the window: the circuit's state is in
Postgres (campaigns.circuits)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import redis

from workers import redis_keys
from workers.ratelimit.errors import redis_errors_translated
from workers.ratelimit.scripts import script

SUCCESS_FLUSH_S = 1.0
# The recent window: the current second and the one before it. Successes reach Redis within SUCCESS_FLUSH_S,
# so a healthy stream's recent successes are in it; a carrier that just went down fails all of it.
RECENT_S = 2


@dataclass(frozen=True)
class WindowCounts:
    """An account's results over the whole window and over its most recent seconds."""

    failures: int
    successes: int
    recent_failures: int
    recent_successes: int


class HealthWindow:
    """Add results to an account's window and read its counts back (failures, successes)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._unwritten_ok: dict[int, int] = {}
        self._last_flush: dict[int, float] = {}

    def add_success(self, account_id: int, window_s: float, count: int = 1) -> None:
        """Successes: kept here, written once a second."""
        now = time.monotonic()
        with self._lock:
            self._unwritten_ok[account_id] = self._unwritten_ok.get(account_id, 0) + count
            if now - self._last_flush.get(account_id, 0.0) < SUCCESS_FLUSH_S:
                return
            self._last_flush[account_id] = now
            ok = self._unwritten_ok.pop(account_id, 0)
        self._add(account_id, ok, 0, window_s)

    def add_failure(self, account_id: int, window_s: float, count: int = 1) -> WindowCounts:
        """Failures, with this process's unwritten successes: the window's counts now."""
        with self._lock:
            ok = self._unwritten_ok.pop(account_id, 0)
        return self._add(account_id, ok, count, window_s)

    def forget(self, account_id: int) -> None:
        """A circuit that opened or closed starts its next window empty."""
        with self._lock:
            self._unwritten_ok.pop(account_id, None)
        with redis_errors_translated(self._client):
            self._client.delete(redis_keys.account_health(account_id))

    def _add(self, account_id: int, ok: int, failed: int, window_s: float) -> WindowCounts:
        with redis_errors_translated(self._client):
            counts = script(self._client, "health_window")(
                keys=[redis_keys.account_health(account_id)],
                args=[ok, failed, max(1, math.ceil(window_s)), RECENT_S])
        return WindowCounts(*(int(n) for n in counts))
