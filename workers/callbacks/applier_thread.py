"""The results consumer inside the API process, for what the event writer's own apply left: the writer
applies each batch in the commit that stores it (workers.callbacks.apply_on_store) and hands over only the
ids of a batch it had to store unapplied (a poison value, an attempt locked too long), which this applies
one by one if it must; a slower sweep pages through recent unapplied events (ids recorded late, a handoff
lost to a restart). A thread (psycopg is synchronous here). Several API processes may run it at once: rows
are claimed with SKIP LOCKED.
"""

from __future__ import annotations

import logging
import threading
import time

from campaigns.config import get_settings
from campaigns.db import SCHEMA_ERRORS, schema_missing
from campaigns.store.event_store import stored_ids
from workers.callbacks.applier import apply_events, apply_events_by_id, recent_after
from workers.pg import get_pool

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 2.0
BATCH = 1000


class EventApplier(threading.Thread):
    """Applies the events the writer stored unapplied, and sweeps recent ones left unmatched."""

    def __init__(self, stored: threading.Event) -> None:
        super().__init__(name="event-applier", daemon=True)
        self.stored = stored
        self.ids = stored_ids(stored)
        self.stopping = threading.Event()
        self.sweep_cursor = 0  # the sweep pages through unapplied events that cannot be matched yet
        self.applied = 0
        self.schema_reported = False

    def stop(self) -> None:
        self.stopping.set()
        self.stored.set()

    def run(self) -> None:
        last_sweep = 0.0
        while not self.stopping.is_set():
            self.stored.wait(timeout=0.5)
            self.stored.clear()
            try:
                self._drain()
                if time.monotonic() - last_sweep > SWEEP_INTERVAL_S:
                    last_sweep = time.monotonic()
                    self._sweep()
            except SCHEMA_ERRORS as exc:  # one line, not a traceback every sweep
                if not self.schema_reported:
                    log.error("%s", schema_missing(get_settings().psycopg_url, str(exc).splitlines()[0]))
                    self.schema_reported = True
                time.sleep(SWEEP_INTERVAL_S)
            except Exception:
                log.exception("applying events failed; the sweep will retry them")
                time.sleep(0.5)

    def _drain(self) -> None:
        with get_pool().connection() as conn:
            while self.ids and not self.stopping.is_set():
                batch = [self.ids.popleft() for _ in range(min(BATCH, len(self.ids)))]
                self.applied += apply_events_by_id(conn, batch).applied

    def _sweep(self) -> None:
        with get_pool().connection() as conn:
            report = apply_events(conn, recent_after(self.sweep_cursor), BATCH)
        self.applied += report.applied
        # A full page: continue after it next time, so old unmatched events cannot starve newer ones.
        self.sweep_cursor = report.last_id if report.seen >= BATCH else 0
