"""Retention (issue 20 item 9): what `dialer prune --older-than 30d` and the daily beat task
(DIALER_PRUNE_OLDER_THAN) delete, in bounded batches, one transaction each.

Deleted, when received before the cut-off:
- call events already applied (`applied_at` set) whose attempt is settled (not open) or gone: what they
  said is on the attempt row itself (status, outcome, times, durations, cost), which results exports read;
- rejected callbacks (kept for an operator to read, exported nowhere), and their hourly counts;
- outbound webhooks delivered (finished) before it; those given up and those still pending are kept.

Never deleted: an attempt or destination row (the final state), an event not yet applied, an event of an
open attempt (the reaper and the call limits read those), and an event that names a recording: the results
exports read the recording URL from the attempt's events (campaigns.results_export), so those events are
what "after export" keeps. A results export is the same before and after a prune.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from campaigns.store.event_retention import PRUNE_EVENTS
from campaigns.webhook_outbox import PRUNE_DELIVERED

BATCH_ROWS = 5000

PRUNE_REJECTED = """
WITH gone AS (
    DELETE FROM rejected_callback WHERE id IN (
        SELECT id FROM rejected_callback WHERE received_at < %(cutoff)s ORDER BY id LIMIT %(batch)s)
    RETURNING id)
SELECT count(*) FROM gone
"""
PRUNE_REJECTED_HOURS = """
WITH gone AS (
    DELETE FROM rejected_callback_hour WHERE (account_id, hour) IN (
        SELECT account_id, hour FROM rejected_callback_hour WHERE hour < %(cutoff)s LIMIT %(batch)s)
    RETURNING 1)
SELECT count(*) FROM gone
"""
TABLES = ("call_event", "rejected_callback", "rejected_callback_hour", "webhook_delivery")

# Told after each committed batch: the table and how many rows that batch deleted.
BatchDone = Callable[[str, int], None]


@dataclass
class PruneReport:
    """Rows deleted per table, and the batches (transactions) it took."""

    cutoff: datetime
    deleted: dict[str, int]
    batches: int = 0


def prune(conn: psycopg.Connection, *, older_than: timedelta, batch: int = BATCH_ROWS,
          on_batch: BatchDone | None = None) -> PruneReport:
    """Delete what retention allows that was received more than `older_than` ago, `batch` rows per
    transaction (each committed before the next begins, so locks and WAL stay small), on a connection
    with no transaction open."""
    if batch < 1:
        raise ValueError("a batch is at least one row")
    row = conn.execute("SELECT now() - %s::interval", (older_than,)).fetchone()
    conn.commit()
    assert row is not None
    report = PruneReport(cutoff=row[0], deleted=dict.fromkeys(TABLES, 0))
    params = {"cutoff": report.cutoff, "batch": batch}

    def one_batch(table: str, sql: str, extra: dict[str, int] | None = None) -> tuple[int, int]:
        with conn.transaction():
            found = conn.execute(sql, {**params, **(extra or {})}).fetchone()
        assert found is not None
        deleted = int(found[0])
        report.deleted[table] += deleted
        report.batches += 1
        if on_batch is not None:
            on_batch(table, deleted)
        return deleted, int(found[1]) if len(found) > 1 else 0

    after = 0
    while True:
        deleted, last = one_batch("call_event", PRUNE_EVENTS, {"after": after})
        if deleted < batch:
            break
        after = last
    for table, sql in (("rejected_callback", PRUNE_REJECTED),
                       ("rejected_callback_hour", PRUNE_REJECTED_HOURS),
                       ("webhook_delivery", PRUNE_DELIVERED)):
        while one_batch(table, sql)[0] == batch:
            pass
    return report
