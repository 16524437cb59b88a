"""Which call events retention deletes (campaigns.retention runs it in batches): the store is the one writer
of call_event, so the statement lives here. Applied events of settled (or gone) attempts received before the
cut-off, except those that name a recording, which results exports read."""

from __future__ import annotations

from campaigns.results_export import EVENT_NAMES_RECORDING_SQL
from campaigns.states import OPEN_ATTEMPT, sql_in

# The next batch of prunable events after a cursor, in id order (the id order is the arrival order, so the
# cursor walks the table once however many rows it keeps), deleted: (rows deleted, last id looked at).
PRUNE_EVENTS = f"""
WITH doomed AS (
    SELECT e.id FROM call_event e LEFT JOIN call_attempt a ON a.id = e.attempt_id
    WHERE e.id > %(after)s AND e.received_at < %(cutoff)s AND e.applied_at IS NOT NULL
      AND (a.id IS NULL OR NOT {sql_in("a.status", OPEN_ATTEMPT)})
      AND NOT ({EVENT_NAMES_RECORDING_SQL})
    ORDER BY e.id LIMIT %(batch)s
    FOR UPDATE OF e SKIP LOCKED),
gone AS (DELETE FROM call_event d USING doomed WHERE d.id = doomed.id RETURNING d.id)
SELECT count(*), coalesce(max(id), 0) FROM gone
"""
