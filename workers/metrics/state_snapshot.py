"""The dialer's state for the API's /metrics as one cached exposition, read at most once per refresh
interval (DIALER_METRICS_REFRESH_S): scrapes in between, however many and however concurrent, are answered
from the last reading, and scrapes that find it stale wait for the one refresh in progress instead of
starting their own. A scraper can therefore cost Postgres one set of aggregates per interval, never one per
request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from workers.metrics.state_collector import DialerStateCollector


class StateSnapshot:
    """The collector's last reading as Prometheus text, refreshed when older than `refresh_s`."""

    def __init__(self, collector: DialerStateCollector, refresh_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.refresh_s = refresh_s
        self.clock = clock
        self.text = b""
        self.read_at = -math.inf
        self.refreshes = 0
        self.lock = asyncio.Lock()

    def fresh(self) -> bool:
        return self.clock() - self.read_at < self.refresh_s

    async def latest(self) -> bytes:
        """The state as exposition text, read again only if the last reading is older than the interval."""
        if self.fresh():
            return self.text
        async with self.lock:  # one refresh; the scrapes that queued behind it take its result
            if not self.fresh():
                # Blocking reads (psycopg, redis) off the event loop, which serves the callbacks.
                self.text = await asyncio.to_thread(generate_latest, self.registry)
                self.read_at = self.clock()
                self.refreshes += 1
        return self.text

    def close(self) -> None:
        self.collector.close()
