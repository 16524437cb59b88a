"""What applying a batch of carrier events writes: the attempts and destinations the events moved, and the
events themselves marked applied (with their attempt), one UPDATE each whatever the batch's size; and an
event set aside as unappliable. workers.callbacks.applier decides every value, under its row locks and
in its transaction; this writes them.

Each UPDATE names its rows twice: joined to the JSON records that carry their values, and as an id array.
The array is what the planner can see (a function's rows it guesses at 100), so it reads the rows by their
key; with the join alone it hashed the records and scanned the whole table on every batch once the table
held more than a few thousand rows (5 ms a batch at 20,000 destinations, analysed or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg

# The attempt columns an event may change, in the order `write_applied` takes them after the id.
ATTEMPT_FIELDS = ("status", "request_uuid", "call_uuid", "provider_status", "outcome", "hangup_cause",
                  "ring_at", "answer_at", "end_at", "duration", "billed_duration", "cost")
WRITE_ATTEMPTS = """
UPDATE call_attempt a SET status = v.status, request_uuid = v.request_uuid, call_uuid = v.call_uuid,
    provider_status = v.provider_status, outcome = v.outcome, hangup_cause = v.hangup_cause,
    ring_at = v.ring_at, answer_at = v.answer_at, end_at = v.end_at, duration = v.duration,
    billed_duration = v.billed_duration, cost = v.cost
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, status text, request_uuid text, call_uuid text,
     provider_status text, outcome text, hangup_cause text, ring_at timestamptz, answer_at timestamptz,
     end_at timestamptz, duration int, billed_duration int, cost numeric)
WHERE a.id = v.id AND a.id = ANY(%s)
"""
WRITE_DESTINATIONS = """
UPDATE destination d SET status = v.status, outcome = v.outcome, next_attempt_at = v.next_attempt_at,
    updated_at = now()
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, status text, outcome text, next_attempt_at timestamptz)
WHERE d.id = v.id AND d.id = ANY(%s)
"""
MARK_APPLIED = """
UPDATE call_event e SET applied_at = now(), attempt_id = v.attempt_id
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, attempt_id bigint) WHERE e.id = v.id AND e.id = ANY(%s)
"""
SET_ASIDE = "UPDATE call_event SET applied_at = now(), rejected_reason = %s WHERE id = %s"

DestinationMove = tuple[int, str, str | None, datetime | None]  # (id, status, outcome, next_attempt_at)


def keyed_records(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """The parameters of a keyed UPDATE above: the rows as JSON records, then their ids (first column)."""
    return (*json_records(names, rows), [row[0] for row in rows])


def attempt_records(rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """WRITE_ATTEMPTS' parameters: rows as (id, *ATTEMPT_FIELDS)."""
    return keyed_records(("id", *ATTEMPT_FIELDS), rows)


def destination_records(rows: Sequence[DestinationMove]) -> tuple[str, list[Any]]:
    """WRITE_DESTINATIONS' parameters."""
    return keyed_records(("id", "status", "outcome", "next_attempt_at"), rows)


def json_records(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> tuple[str]:
    """Rows as one JSON array parameter for jsonb_to_recordset: one orjson call instead of psycopg dumping
    each array element in Python."""
    return (orjson.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str).decode(),)


def write_applied(
    conn: psycopg.Connection,
    *,
    attempts: Sequence[tuple[Any, ...]],
    destinations: Sequence[DestinationMove],
    applied: Sequence[tuple[int, int]],
) -> None:
    """Write back what a batch of events changed: `attempts` as (id, *ATTEMPT_FIELDS), the destinations'
    moves, and each applied event with its attempt as (event id, attempt id). Nothing to write: no
    statement."""
    if attempts:
        conn.execute(WRITE_ATTEMPTS, attempt_records(attempts))
    if destinations:
        conn.execute(WRITE_DESTINATIONS, destination_records(destinations))
    if applied:
        conn.execute(MARK_APPLIED, keyed_records(("id", "attempt_id"), applied))


def set_event_aside(conn: psycopg.Connection, *, event_id: int, reason: str) -> None:
    """An event that cannot be applied (its values break the transition) is marked applied with the reason,
    so it never blocks the events after it."""
    conn.execute(SET_ASIDE, (reason, event_id))
