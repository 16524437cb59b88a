"""A campaign's results (every destination with its last attempt) and rejects as CSV. One format for the
CLI, the demo and the HTTP API.

Every cell is safe to open in a spreadsheet: rows go through campaigns.safe_csv, the one export writer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import psycopg

# Re-exported: the API's /results route and older callers take the writer from here.
from campaigns.safe_csv import SafeCsvWriter as SafeCsvWriter
from campaigns.safe_csv import spreadsheet_safe as spreadsheet_safe

# Where a stored event (call_event.payload: "raw" as the carrier sent it, "parsed" our reading) names the
# call's recording: every URL of a list first (TryVox's "recording URLs", seed l.50, in each spelling its
# adapter reads), else our parsed `recording_url` (the first of them), else one URL as sent (Plivo/Vobiz
# `RecordUrl`).
RECORDING_URL_KEYS = (
    ("raw", "recording_urls"), ("raw", "recordingUrls"), ("raw", "RecordUrls"), ("raw", "RecordingUrls"),
    ("parsed", "recording_url"),
    ("raw", "recording_url"), ("raw", "recordingUrl"), ("raw", "RecordUrl"), ("raw", "RecordingUrl"),
)
# A key that is there but null, "" or [] names no recording: the next one is read.
_RECORDING_VALUE = ", ".join(f"nullif(nullif(nullif(e.payload -> '{part}' -> '{key}', 'null'), '\"\"'), '[]')"
                             for part, key in RECORDING_URL_KEYS)
# Whether an event (`e`) names a recording: retention keeps every event that does (campaigns.retention).
EVENT_NAMES_RECORDING_SQL = f"coalesce({_RECORDING_VALUE}) IS NOT NULL"
# The recording URL of an attempt (`{attempt}`) from the latest of its events that names one; several are
# joined by a space.
RECORDING_URL_SQL = f"""(
SELECT string_agg(url, ' ') FROM (
    SELECT v FROM (SELECT e.id, coalesce({_RECORDING_VALUE}) AS v FROM call_event e
                   WHERE e.attempt_id = {{attempt}}.id) carried
    WHERE v IS NOT NULL ORDER BY id DESC LIMIT 1) latest,
    jsonb_array_elements_text(CASE jsonb_typeof(v) WHEN 'array' THEN v ELSE jsonb_build_array(v) END) AS url
WHERE url <> '')"""

RESULT_COLUMNS = ("line", "number", "status", "outcome", "attempts", "request_uuid", "call_uuid",
                  "provider_status", "hangup_cause", "duration", "billed_duration", "answer_at", "end_at",
                  "recording_url")
RESULTS_SQL = f"""
SELECT d.line_no, d.number, d.status, d.outcome, d.attempts_made, a.request_uuid, a.call_uuid,
       a.provider_status, a.hangup_cause, a.duration, a.billed_duration, a.answer_at, a.end_at,
       {RECORDING_URL_SQL.format(attempt="a")}
FROM destination d LEFT JOIN LATERAL (
    SELECT * FROM call_attempt WHERE destination_id = d.id ORDER BY attempt_no DESC LIMIT 1) a ON true
WHERE d.campaign_id = %s ORDER BY d.line_no
"""


REJECT_COLUMNS = ("line", "reason", "raw_value", "detail")
REJECTS_SQL = """
SELECT line_no, reason, raw_value, detail FROM rejected_row WHERE campaign_id = %s ORDER BY line_no, id
"""


def _stream_csv(conn: psycopg.Connection, name: str, columns: tuple[str, ...], sql: str, campaign_id: int,
                handle: TextIO, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
    """A header, then every row of `sql` (its parameters: the campaign id, or `params`) through a
    server-side cursor (constant memory), made safe."""
    writer = SafeCsvWriter(handle)
    writer.writerow(columns)
    params = (campaign_id,) if params is None else params
    with conn.cursor(name=f"{name}_{campaign_id}") as cur:
        cur.execute(sql, params)
        for row in cur:
            writer.writerow(row)


def write_rejects_csv(conn: psycopg.Connection, campaign_id: int, handle: TextIO) -> None:
    """The campaign's rejected rows (line, reason, raw value, detail) as CSV."""
    _stream_csv(conn, "rejects", REJECT_COLUMNS, REJECTS_SQL, campaign_id, handle)


def write_results_csv(conn: psycopg.Connection, campaign_id: int, handle: TextIO) -> None:
    """Every destination with its last attempt as CSV."""
    _stream_csv(conn, "results", RESULT_COLUMNS, RESULTS_SQL, campaign_id, handle)


# Per run: one row per destination and run, with that run's last attempt (attempts carry their run).
RUN_RESULT_COLUMNS = ("run", "line", "number", "outcome", "attempts_in_run", "request_uuid", "call_uuid",
                      "provider_status", "hangup_cause", "duration", "answer_at", "end_at", "spoken_text",
                      "recording_url")
RUN_RESULTS_SQL = f"""
SELECT DISTINCT ON (a.run_no, d.line_no, d.id) a.run_no, d.line_no, d.number, a.outcome,
       count(*) OVER (PARTITION BY a.destination_id, a.run_no), a.request_uuid, a.call_uuid,
       a.provider_status, a.hangup_cause, a.duration, a.answer_at, a.end_at, a.spoken_text,
       {RECORDING_URL_SQL.format(attempt="a")}
FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.campaign_id = %(c)s AND (%(run)s::int IS NULL OR a.run_no = %(run)s)
ORDER BY a.run_no, d.line_no, d.id, a.attempt_no DESC
"""


def write_run_results_csv(
    conn: psycopg.Connection, campaign_id: int, handle: TextIO, run_no: int | None = None
) -> None:
    """Results per run (`run_no`), or for every run (None): each destination's last attempt in each run."""
    _stream_csv(conn, "run_results", RUN_RESULT_COLUMNS, RUN_RESULTS_SQL, campaign_id, handle,
                {"c": campaign_id, "run": run_no})
