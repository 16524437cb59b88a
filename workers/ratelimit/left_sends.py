"""The sends of this process that have left, waiting to lower their reach in Redis (cps.lua).

A booked send is counted as reaching the carrier as late as its allowed lateness allows until Redis hears
when it really left. That news need not be instant (until it arrives the count is only more cautious), but
it must arrive before a booking a second later is checked against it. So it rides on this process's next
booking (the same round trip, workers.ratelimit.cps.CpsLimiter.reserve), and a daemon thread sends what no
booking took within `COALESCE_S`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from workers.ratelimit.cps import LeftSend

log = logging.getLogger(__name__)

COALESCE_S = 0.05  # well inside the second before a later booking is checked against a send


class LeftSends:
    """A thread-safe list of left sends; `take()` empties it for a booking, the flusher sends the rest."""

    def __init__(self, record: Callable[[list[LeftSend]], None], coalesce_s: float = COALESCE_S) -> None:
        self._record = record
        self._coalesce_s = coalesce_s
        self._pending: list[LeftSend] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher_pid = 0

    def add(self, send: LeftSend) -> None:
        with self._lock:
            self._pending.append(send)
            if self._flusher_pid != os.getpid():  # none yet, or inherited across a fork (threads are not)
                self._flusher_pid = os.getpid()
                threading.Thread(target=self._run, name="dialer-left-sends", daemon=True).start()
        self._wake.set()

    def take(self) -> list[LeftSend]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def flush(self) -> None:
        """Send what is pending now. A failure keeps nothing: the reach stays wide, which is only cautious."""
        taken = self.take()
        if not taken:
            return
        try:
            self._record(taken)
        except Exception:
            log.warning("could not lower the reach of %d sent bookings; they stay counted wide", len(taken),
                        exc_info=True)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self._coalesce_s)  # let a booking take them on its own round trip
            self.flush()
