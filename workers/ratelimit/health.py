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

import redis

from workers import redis_keys
from workers.ratelimit.errors import redis_errors_translated
from workers.ratelimit.scripts import script

SUCCESS_FLUSH_S = 1.0


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

    def add_failure(self, account_id: int, window_s: float, count: int = 1) -> tuple[int, int]:
        """Failures, with this process's unwritten successes: the window's (failures, successes) now."""
        with self._lock:
            ok = self._unwritten_ok.pop(account_id, 0)
        return self._add(account_id, ok, count, window_s)

    def forget(self, account_id: int) -> None:
        """A circuit that opened or closed starts its next window empty."""
        with self._lock:
            self._unwritten_ok.pop(account_id, None)
        with redis_errors_translated(self._client):
            self._client.delete(redis_keys.account_health(account_id))

    def _add(self, account_id: int, ok: int, failed: int, window_s: float) -> tuple[int, int]:
        with redis_errors_translated(self._client):
            failures, successes = script(self._client, "health_window")(
                keys=[redis_keys.account_health(account_id)], args=[ok, failed, max(1, math.ceil(window_s))])
        return int(failures), int(successes)
