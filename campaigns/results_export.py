"""A campaign's results as CSV: every destination with its last attempt. One format for the CLI, the demo
and the HTTP API."""

from __future__ import annotations

import csv
from typing import TextIO

import psycopg

RESULT_COLUMNS = ("line", "number", "status", "outcome", "attempts", "request_uuid", "call_uuid",
                  "provider_status", "hangup_cause", "duration", "billed_duration", "answer_at", "end_at")
RESULTS_SQL = """
SELECT d.line_no, d.number, d.status, d.outcome, d.attempts_made, a.request_uuid, a.call_uuid,
       a.provider_status, a.hangup_cause, a.duration, a.billed_duration, a.answer_at, a.end_at
FROM destination d LEFT JOIN LATERAL (
    SELECT * FROM call_attempt WHERE destination_id = d.id ORDER BY attempt_no DESC LIMIT 1) a ON true
WHERE d.campaign_id = %s ORDER BY d.line_no
"""


def write_results_csv(conn: psycopg.Connection, campaign_id: int, handle: TextIO) -> None:
    """Stream the results to `handle` through a server-side cursor (constant memory)."""
    writer = csv.writer(handle)
    writer.writerow(RESULT_COLUMNS)
    with conn.cursor(name=f"results_{campaign_id}") as cur:
        cur.execute(RESULTS_SQL, (campaign_id,))
        for row in cur:
            writer.writerow(row)
