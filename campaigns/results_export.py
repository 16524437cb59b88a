"""A campaign's results and rejects, streamed: one schema (campaigns.results_schema) for the CLI, the demo,
the HTTP API and the console, as CSV or JSON Lines.

Rows come from a server-side cursor FETCH_ROWS at a time and leave as text chunks, so an export of any
size takes bounded memory. Every CSV cell is safe to open in a spreadsheet: rows go through
campaigns.safe_csv, the one export writer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

import psycopg

from campaigns.errors import NotFound
from campaigns.results_schema import ResultFormat, header, jsonl_lines
from campaigns.runs import NEXT_RUN_NO

# Re-exported: the API's /results route and older callers take the writer from here.
from campaigns.safe_csv import SafeCsvWriter as SafeCsvWriter
from campaigns.safe_csv import spreadsheet_safe as spreadsheet_safe
from campaigns.states import FINAL_DESTINATION, sql_in

# Where a stored event (call_event.payload: "raw" as the carrier sent it, "parsed" our reading) names the
# call's recording: every URL of a list first (TryVox's "recording URLs", page, Webhooks, Hangup URL, in each
# spelling its adapter reads), else our parsed `recording_url` (the first of them), else one URL as sent
# (Plivo/Vobiz `RecordUrl`).
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

FETCH_ROWS = 2000  # rows per round trip of the server-side cursor, and per chunk of text written

# Each input column's cell, in the upload's order (`%(cols)s`): the row's own value, kept in
# destination.variables, or for the phone column (the one column not kept as a variable) the number as
# dialed; its text as uploaded is not kept.
_INPUT_CELLS = """ARRAY(SELECT CASE WHEN d.variables ? col THEN d.variables ->> col ELSE d.number END
             FROM unnest(%(cols)s::text[]) WITH ORDINALITY AS u(col, i) ORDER BY i)"""
# campaigns.results_schema.CALL_FIELDS from `d` (the destination), `a` (the call described, with the name
# of the account that placed it) and the row's run and its attempts in it.
_CALL_CELLS = f"""d.line_no, d.number, d.status, {{run}}, {{outcome}}, d.attempts_made, {{run_attempts}},
       a.run_no, a.outcome, (SELECT name FROM provider_account WHERE id = a.account_id),
       a.request_uuid, a.call_uuid, a.provider_status, a.hangup_cause, a.duration, a.billed_duration,
       a.answer_at, a.end_at, a.spoken_text, {RECORDING_URL_SQL.format(attempt="a")}"""
_LAST_ATTEMPT = "SELECT * FROM call_attempt WHERE destination_id = d.id ORDER BY attempt_no DESC LIMIT 1"
_ATTEMPTS_IN_LATEST_RUN = ("(SELECT count(*) FROM call_attempt r "
                           "WHERE r.destination_id = d.id AND r.run_no = d.run_no)")

# Default: a row per destination for its latest run, described by its last call.
RESULTS_SQL = f"""
SELECT {_INPUT_CELLS}, {_CALL_CELLS.format(
    run="d.run_no", outcome="d.outcome", run_attempts=_ATTEMPTS_IN_LATEST_RUN)}
FROM destination d LEFT JOIN LATERAL ({_LAST_ATTEMPT}) a ON true
WHERE d.campaign_id = %(c)s ORDER BY d.line_no
"""
# Per run (`%(run)s`, or every run when null): a row per destination and run it was dialed in, with that
# run's last call; and a row for a destination's latest run when it finished without a call in it (DNC,
# cancelled, expired), with the last call of an earlier run. The latest run's outcome is the
# destination's now, so these rows for its latest run are the default rows.
RUN_RESULTS_SQL = f"""
WITH picked AS (
    (SELECT DISTINCT ON (a.destination_id, a.run_no) a.destination_id, a.run_no AS run, a.id AS attempt_id,
            count(*) OVER (PARTITION BY a.destination_id, a.run_no) AS run_attempts
     FROM call_attempt a WHERE a.campaign_id = %(c)s AND (%(run)s::int IS NULL OR a.run_no = %(run)s)
     ORDER BY a.destination_id, a.run_no, a.attempt_no DESC)
    UNION ALL
    SELECT d.id, d.run_no, (SELECT a.id FROM ({_LAST_ATTEMPT}) a), 0 FROM destination d
    WHERE d.campaign_id = %(c)s AND {sql_in("d.status", FINAL_DESTINATION)}
        AND (%(run)s::int IS NULL OR d.run_no = %(run)s)
        AND NOT EXISTS (SELECT 1 FROM call_attempt x WHERE x.destination_id = d.id AND x.run_no = d.run_no)
)
SELECT {_INPUT_CELLS}, {_CALL_CELLS.format(
    run="p.run", outcome="CASE WHEN p.run = d.run_no THEN d.outcome ELSE a.outcome END",
    run_attempts="p.run_attempts")}
FROM picked p JOIN destination d ON d.id = p.destination_id LEFT JOIN call_attempt a ON a.id = p.attempt_id
ORDER BY p.run, d.line_no
"""


def input_columns(conn: psycopg.Connection, campaign_id: int) -> tuple[str, ...]:
    """The uploaded file's columns in its order; for a campaign loaded before they were kept, the names of
    its first row's variables (in Postgres' jsonb order, shorter names first; the phone column absent)."""
    row = conn.execute("SELECT input_columns FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
    if row[0]:
        return tuple(row[0])
    keys = conn.execute(
        "SELECT jsonb_object_keys(variables) FROM (SELECT variables FROM destination WHERE campaign_id = %s "
        "ORDER BY line_no LIMIT 1) first", (campaign_id,)).fetchall()
    return tuple(key for (key,) in keys)


def require_results(conn: psycopg.Connection, campaign_id: int, run: int | None = None) -> None:
    """NotFound, in `dialer campaign show`'s words, unless the campaign (and run `run`) exists."""
    input_columns(conn, campaign_id)
    if run is None:
        return
    found = conn.execute(NEXT_RUN_NO, {"c": campaign_id}).fetchone()
    last = int(found[0]) - 1 if found else 0
    if not 1 <= run <= last:
        runs = f"runs 1 to {last}" if last > 1 else ("only run 1" if last == 1 else "no run yet")
        raise NotFound(f"campaign {campaign_id} has no run {run}: it has {runs} "
                       f"(see `dialer campaign runs {campaign_id}`)")


def result_chunks(conn: psycopg.Connection, campaign_id: int, fmt: ResultFormat = ResultFormat.CSV, *,
                  run: int | None = None, all_runs: bool = False,
                  fetch_rows: int | None = None) -> Iterator[str]:
    """The campaign's results as text chunks in `fmt`: by default a row per destination; with `run` that
    run's rows, with `all_runs` every run's. A server-side cursor reads `fetch_rows` rows at a time."""
    fetch_rows = fetch_rows or FETCH_ROWS
    inputs = input_columns(conn, campaign_id)
    names = header(inputs)
    per_run = run is not None or all_runs
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    if fmt is ResultFormat.CSV:
        writer.writerow(names)
    with conn.cursor(name=f"results_{campaign_id}") as cur:
        cur.itersize = fetch_rows
        cur.execute(RUN_RESULTS_SQL if per_run else RESULTS_SQL,
                    {"c": campaign_id, "run": run, "cols": list(inputs)})
        while batch := cur.fetchmany(fetch_rows):
            rows = [(*row[0], *row[1:]) for row in batch]
            if fmt is ResultFormat.JSONL:
                yield jsonl_lines(names, rows)
                continue
            for flat in rows:
                writer.writerow(flat)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def write_results(conn: psycopg.Connection, campaign_id: int, handle: TextIO,
                  fmt: ResultFormat = ResultFormat.CSV, *, run: int | None = None,
                  all_runs: bool = False) -> None:
    """The campaign's results (see result_chunks) written to `handle`."""
    for chunk in result_chunks(conn, campaign_id, fmt, run=run, all_runs=all_runs):
        handle.write(chunk)


def write_results_csv(conn: psycopg.Connection, campaign_id: int, handle: TextIO) -> None:
    """A row per destination, for its latest run, as CSV."""
    write_results(conn, campaign_id, handle)


def write_run_results_csv(
    conn: psycopg.Connection, campaign_id: int, handle: TextIO, run_no: int | None = None
) -> None:
    """Results of run `run_no`, or of every run (None), as CSV."""
    write_results(conn, campaign_id, handle, run=run_no, all_runs=run_no is None)


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
