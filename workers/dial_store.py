"""The SQL of dialing: every write is a conditional UPDATE on the expected current state.

Invariant 1 lives here: `start_attempts` moves a destination queued -> dialing and inserts its attempt row in
one committed transaction before any HTTP request, and only for destinations still `queued` with the
attempt count the caller saw. A re-delivered chunk finds them `dialing` and dials nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.states import DestinationStatus, allowed_sources, sql_in
from campaigns.windows import CallingWindow, window_of

# A claimed (`queued`) destination belongs to its chunk task this long; after it, the dispatcher may claim it
# again (the task died). Safe: only one of two claimants can move it queued -> dialing.
QUEUED_LEASE_S = 30

# Each move is conditional on the state machine's sources of its target (campaigns.states).
_HAND_BACK = (
    "UPDATE destination SET status = 'pending', next_attempt_at = %s, updated_at = now() "
    f"WHERE id = ANY(%s) AND {sql_in('status', allowed_sources(DestinationStatus.PENDING))}"
)
_START_ATTEMPTS = f"""
WITH expected(id, attempts_made) AS (SELECT * FROM unnest(%s::bigint[], %s::int[])),
won AS (
    UPDATE destination d
    SET status = 'dialing', attempts_made = d.attempts_made + 1, next_attempt_at = NULL,
        updated_at = now()
    FROM expected e
    WHERE d.id = e.id AND {sql_in("d.status", allowed_sources(DestinationStatus.DIALING))}
      AND d.attempts_made = e.attempts_made
    RETURNING d.id, d.attempts_made, d.run_no
)
INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status,
                          lease_expires_at, run_no)
SELECT id, %s, %s, attempts_made, %s, 'dialing', now() + make_interval(secs => %s), run_no FROM won
RETURNING id, destination_id
"""


@dataclass(frozen=True)
class CampaignForDial:
    id: int
    state: str
    account_id: int
    caller_id: str
    answer_url: str | None
    provider_options: dict[str, Any]
    cps: float | None
    max_concurrent: int | None
    retry_policy: dict[str, Any]
    window: CallingWindow
    timezone_override: str | None
    end_at: datetime | None


@dataclass(frozen=True)
class QueuedDestination:
    id: int
    number: str
    timezone: str
    attempts_made: int
    attempts_before_run: int = 0  # attempts of earlier runs (campaigns.runs): not counted by retry limits

    @property
    def next_attempt_no(self) -> int:
        return self.attempts_made + 1

    @property
    def next_try_this_run(self) -> int:
        return self.next_attempt_no - self.attempts_before_run

    @property
    def slot_member(self) -> str:
        """The concurrency-slot member of the attempt about to be made: one per (destination, attempt)."""
        return f"{self.id}:{self.next_attempt_no}"


@dataclass(frozen=True)
class StartedAttempt:
    attempt_id: int
    destination: QueuedDestination


def load_campaign(conn: psycopg.Connection, campaign_id: int) -> CampaignForDial | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None or row["account_id"] is None:
        return None
    return CampaignForDial(
        id=row["id"],
        state=row["state"],
        account_id=row["account_id"],
        caller_id=row["caller_id"] or "",
        answer_url=row["answer_url"],
        provider_options=row["provider_options"] or {},
        cps=row["cps"],
        max_concurrent=row["max_concurrent"],
        retry_policy=row["retry_policy"] or {},
        window=window_of(
            row["window_start"], row["window_end"], row["window_days"], row["start_at"], row["end_at"]
        ),
        timezone_override=row["timezone_override"],
        end_at=row["end_at"],
    )


def queued_destinations(conn: psycopg.Connection, ids: list[int]) -> list[QueuedDestination]:
    rows = conn.execute(
        "SELECT id, number, timezone, attempts_made, attempts_before_run FROM destination "
        "WHERE id = ANY(%s) AND status = 'queued' "
        "ORDER BY id",
        (ids,),
    ).fetchall()
    return [QueuedDestination(*row) for row in rows]


def dnc_numbers(conn: psycopg.Connection, numbers: list[str]) -> set[str]:
    rows = conn.execute("SELECT number FROM dnc_number WHERE number = ANY(%s)", (numbers,)).fetchall()
    return {row[0] for row in rows}


def hand_back(conn: psycopg.Connection, ids: list[int], not_before: datetime | None) -> int:
    """Return claimed-but-undialed destinations to `pending`, to be claimed again from `not_before`."""
    if not ids:
        return 0
    cur = conn.execute(_HAND_BACK, (not_before, ids))
    return cur.rowcount


def mark_queued_as(conn: psycopg.Connection, ids: list[int], status: str, outcome: str | None = None) -> int:
    """Finish queued destinations without a call (dnc, cancelled, expired)."""
    if not ids:
        return 0
    cur = conn.execute(
        "UPDATE destination SET status = %s, outcome = %s, next_attempt_at = NULL, updated_at = now() "
        "WHERE id = ANY(%s) AND status = 'queued'",
        (status, outcome, ids),
    )
    return cur.rowcount


def start_attempts(
    conn: psycopg.Connection,
    *,
    campaign: CampaignForDial,
    destinations: list[QueuedDestination],
    batch_id: uuid.UUID,
    lease_s: float,
) -> list[StartedAttempt]:
    """Commit queued -> dialing and one attempt row per destination, before the request is sent."""
    by_id = {d.id: d for d in destinations}
    # One statement: atomic on its own, committed before this returns (autocommit).
    rows = conn.execute(
        _START_ATTEMPTS,
        (
            [d.id for d in destinations],
            [d.attempts_made for d in destinations],
            campaign.id,
            campaign.account_id,
            batch_id,
            lease_s,
        ),
    ).fetchall()
    return [StartedAttempt(attempt_id=row[0], destination=by_id[row[1]]) for row in rows]


def undo_unsent_attempts(
    conn: psycopg.Connection,
    attempts: list[StartedAttempt],
    not_before: datetime | None,
    *,
    back_to: str = "pending",
) -> None:
    """The carrier refused the request outright (429, auth, balance): no call exists, so no attempt.
    `back_to` is `queued` when this task will retry them itself, `pending` to hand them to the dispatcher."""
    if not attempts:
        return
    with conn.transaction():
        conn.execute(
            "DELETE FROM call_attempt WHERE id = ANY(%s) AND status = 'dialing'",
            ([a.attempt_id for a in attempts],),
        )
        conn.execute(
            "UPDATE destination SET status = %s, attempts_made = attempts_made - 1, "
            "next_attempt_at = CASE WHEN %s = 'queued' THEN now() + make_interval(secs => %s) ELSE %s END, "
            "updated_at = now() WHERE id = ANY(%s) AND status = 'dialing'",
            (back_to, back_to, QUEUED_LEASE_S, not_before, [a.destination.id for a in attempts]),
        )


def requeue_for_single_dial(conn: psycopg.Connection, attempts: list[StartedAttempt]) -> None:
    """A bulk request was refused as a whole (400): put its destinations back to dial one by one."""
    with conn.transaction():
        conn.execute(
            "DELETE FROM call_attempt WHERE id = ANY(%s) AND status = 'dialing'",
            ([a.attempt_id for a in attempts],),
        )
        conn.execute(
            "UPDATE destination SET status = 'queued', attempts_made = attempts_made - 1, "
            "updated_at = now(), "
            "next_attempt_at = now() + make_interval(secs => %s) WHERE id = ANY(%s) AND status = 'dialing'",
            (QUEUED_LEASE_S, [a.destination.id for a in attempts]),
        )


def fail_attempts(
    conn: psycopg.Connection,
    attempts: list[StartedAttempt],
    *,
    message: str,
    destination_status: str,
    next_attempt_at: datetime | None,
) -> None:
    """The request reached the carrier and was refused, or failed before placing a call."""
    with conn.transaction():
        conn.execute(
            "UPDATE call_attempt SET status = 'failed', outcome = 'failed', error_message = %s, "
            "end_at = now() "
            "WHERE id = ANY(%s) AND status = 'dialing'",
            (message[:2000], [a.attempt_id for a in attempts]),
        )
        conn.execute(
            "UPDATE destination SET status = %s, outcome = 'failed', next_attempt_at = %s, "
            "updated_at = now() "
            "WHERE id = ANY(%s) AND status = 'dialing'",
            (destination_status, next_attempt_at, [a.destination.id for a in attempts]),
        )


def note_ambiguous(conn: psycopg.Connection, attempts: list[StartedAttempt], message: str) -> None:
    """Sent with no answer: the call may be live. Leave it `dialing` for a callback or the reaper."""
    conn.execute(
        "UPDATE call_attempt SET error_message = %s, sent_at = coalesce(sent_at, now()) WHERE id = ANY(%s)",
        (message[:2000], [a.attempt_id for a in attempts]),
    )


def record_sent(conn: psycopg.Connection, rows: list[tuple[int, str | None, str | None]]) -> None:
    """Record (attempt id, request_uuid, call_uuid) of accepted calls (callbacks may be ahead of this)."""
    if not rows:
        return
    rows = sorted(rows)
    # One statement; rows locked in id order, as the event applier does, so the two never deadlock.
    conn.execute(
        """
        WITH locked AS (SELECT id FROM call_attempt WHERE id = ANY(%s) ORDER BY id FOR UPDATE)
        UPDATE call_attempt a
        SET status = CASE WHEN a.status = 'dialing' THEN 'sent' ELSE a.status END,
            request_uuid = coalesce(a.request_uuid, v.request_uuid),
            call_uuid = coalesce(a.call_uuid, v.call_uuid),
            sent_at = coalesce(a.sent_at, now())
        FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, request_uuid, call_uuid), locked
        WHERE a.id = v.id AND locked.id = v.id
        """,
        ([r[0] for r in rows], [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
    )


def mark_sending(conn: psycopg.Connection, attempts: list[StartedAttempt]) -> set[int]:
    """Mark attempts as about to be sent, just before the request: an attempt without `sent_at` provably
    never reached the carrier, so the reaper may hand it back for dialing. Returns the ids marked; one the
    reaper handed back meanwhile is not marked and must not be sent."""
    rows = conn.execute(
        "UPDATE call_attempt SET sent_at = now() "
        "WHERE id = ANY(%s) AND status = 'dialing' AND sent_at IS NULL RETURNING id",
        ([a.attempt_id for a in attempts],),
    ).fetchall()
    return {row[0] for row in rows}


def hand_back_never_sent(conn: psycopg.Connection, older_than_s: float) -> list[tuple[int, int, str]]:
    """Attempts committed but never marked as sending (their worker died before the request): no call was
    placed, so undo them and let the destination be dialed again. Returns (account, campaign, slot member).
    Conditional on `sent_at IS NULL` under the row lock, so a worker waking late and this can't both win."""
    rows = conn.execute(
        """
        WITH gone AS (
            DELETE FROM call_attempt a USING destination d
            WHERE d.id = a.destination_id AND d.status = 'dialing' AND d.attempts_made = a.attempt_no
              AND a.status = 'dialing' AND a.sent_at IS NULL
              AND a.created_at < now() - make_interval(secs => %s)
            RETURNING a.account_id, a.campaign_id, a.destination_id, a.attempt_no
        ), back AS (
            -- In a cancelled campaign nobody would claim it again: it is cancelled, not pending.
            UPDATE destination d SET attempts_made = d.attempts_made - 1, next_attempt_at = NULL,
                status = CASE WHEN c.state = 'cancelled' THEN 'cancelled' ELSE 'pending' END,
                updated_at = now()
            FROM gone JOIN campaign c ON c.id = gone.campaign_id WHERE d.id = gone.destination_id
        )
        SELECT account_id, campaign_id, destination_id, attempt_no FROM gone
        """,
        (older_than_s,),
    ).fetchall()
    return [(r[0], r[1], f"{r[2]}:{r[3]}") for r in rows]


def has_unapplied_events(conn: psycopg.Connection, ids: list[str]) -> bool:
    """Did any callback for these request/call ids arrive before they were recorded?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM call_event WHERE applied_at IS NULL "
        "AND (request_uuid = ANY(%s) OR call_uuid = ANY(%s)))",
        (ids, ids),
    ).fetchone()
    return bool(row and row[0])


def pause_account_campaigns(conn: psycopg.Connection, account_id: int, reason: str) -> int:
    """Credentials or balance are wrong: every running campaign of the account stops until a person acts."""
    cur = conn.execute(
        "UPDATE campaign SET state = 'paused', state_reason = %s, updated_at = now() "
        "WHERE account_id = %s AND state = 'running'",
        (reason[:500], account_id),
    )
    return cur.rowcount


def count_throttle(conn: psycopg.Connection, campaign_id: int) -> None:
    conn.execute("UPDATE campaign SET throttled_count = throttled_count + 1 WHERE id = %s", (campaign_id,))
