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


# Per run: one row per destination and run, with that run's last attempt (attempts carry their run).
RUN_RESULT_COLUMNS = ("run", "line", "number", "outcome", "attempts_in_run", "request_uuid", "call_uuid",
                      "provider_status", "hangup_cause", "duration", "answer_at", "end_at", "spoken_text")
RUN_RESULTS_SQL = """
SELECT DISTINCT ON (a.run_no, d.line_no, d.id) a.run_no, d.line_no, d.number, a.outcome,
       count(*) OVER (PARTITION BY a.destination_id, a.run_no), a.request_uuid, a.call_uuid,
       a.provider_status, a.hangup_cause, a.duration, a.answer_at, a.end_at, a.spoken_text
FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.campaign_id = %(c)s AND (%(run)s::int IS NULL OR a.run_no = %(run)s)
ORDER BY a.run_no, d.line_no, d.id, a.attempt_no DESC
"""


def write_run_results_csv(
    conn: psycopg.Connection, campaign_id: int, handle: TextIO, run_no: int | None = None
) -> None:
    """Results per run (`run_no`), or for every run (None): each destination's last attempt in each run."""
    writer = csv.writer(handle)
    writer.writerow(RUN_RESULT_COLUMNS)
    with conn.cursor(name=f"run_results_{campaign_id}") as cur:
        cur.execute(RUN_RESULTS_SQL, {"c": campaign_id, "run": run_no})
        for row in cur:
            writer.writerow(row)
