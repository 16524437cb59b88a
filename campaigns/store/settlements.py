"""How an attempt past its deadline is settled, and a destination left live without an open attempt moved on:
the reaper's and the send evidence's writes (workers.housekeeping decides which, and the retry policy where
each destination goes). Every write is conditional on the attempt still being open, and the destination still
being the one that attempt left, so a late worker, a callback and this can never both win.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from campaigns.retry_policy import NextStep
from campaigns.states import LIVE_DESTINATION, OPEN_ATTEMPT, CampaignState, slot_member, sql_in

_HAND_BACK_NEVER_SENT = f"""
WITH gone AS (
    DELETE FROM call_attempt a USING destination d
    WHERE d.id = a.destination_id AND d.status = 'dialing' AND d.attempts_made = a.attempt_no
      AND a.status = 'dialing' AND a.sent_at IS NULL
      AND a.created_at < now() - make_interval(secs => %s)
    RETURNING a.id, a.account_id, a.campaign_id, a.destination_id, a.attempt_no
), back AS (
    -- In a cancelled campaign nobody would claim it again: it is cancelled, not pending.
    UPDATE destination d SET attempts_made = d.attempts_made - 1, next_attempt_at = NULL,
        status = CASE WHEN c.state = '{CampaignState.CANCELLED.value}' THEN 'cancelled' ELSE 'pending' END,
        updated_at = now()
    FROM gone JOIN campaign c ON c.id = gone.campaign_id WHERE d.id = gone.destination_id
)
SELECT account_id, campaign_id, id FROM gone
"""
_PLACED = """
UPDATE call_attempt SET status = 'sent', error_message = left(coalesce(error_message || '; ', '') || %s, 2000)
WHERE id = ANY(%s) AND status = 'dialing'
"""
_NEVER_PLACED = """
WITH ended AS (
    UPDATE call_attempt SET status = 'unknown', outcome = 'unknown', end_at = now(),
        error_message = left(coalesce(error_message || '; ', '') || %s, 2000)
    WHERE id = %s AND status = 'dialing'
    RETURNING id, destination_id, attempt_no
), moved AS (
    UPDATE destination d SET status = %s, outcome = %s, next_attempt_at = %s, updated_at = now()
    FROM ended WHERE d.id = ended.destination_id AND d.attempts_made = ended.attempt_no
      AND d.status = 'dialing'
)
SELECT id FROM ended
"""
_LEASE_ENDED = f"""UPDATE call_attempt SET status = 'unknown', outcome = 'unknown', end_at = now(),
       error_message = coalesce(error_message, 'lease expired with no final event')
   WHERE id = %s AND {sql_in("status", OPEN_ATTEMPT)}"""
_DESTINATION_UNKNOWN = f"""UPDATE destination SET status = %s, outcome = 'unknown', next_attempt_at = %s,
       updated_at = now()
   WHERE id = %s AND attempts_made = %s AND {sql_in("status", LIVE_DESTINATION)}"""
_EXTEND_LEASE = (
    "UPDATE call_attempt SET lease_expires_at = now() + make_interval(secs => %s) WHERE id = %s "
    f"AND {sql_in('status', OPEN_ATTEMPT)}"
)
_ORPHAN_BACK_TO_PENDING = f"""
UPDATE destination d SET next_attempt_at = NULL, updated_at = now(),
    status = CASE WHEN (SELECT state FROM campaign WHERE id = d.campaign_id)
                       = '{CampaignState.CANCELLED.value}'
                  THEN 'cancelled' ELSE 'pending' END,  -- nobody claims a cancelled campaign's pending
    attempts_made = (SELECT coalesce(max(attempt_no), 0) FROM call_attempt WHERE destination_id = d.id)
WHERE d.id = %s AND d.status = %s AND d.attempts_made = %s
  AND NOT EXISTS (SELECT 1 FROM call_attempt a
                  WHERE a.destination_id = d.id AND a.attempt_no = d.attempts_made)
"""
_ORPHAN_MOVE_ON = """
UPDATE destination d SET status = %s, outcome = %s, next_attempt_at = %s, updated_at = now()
WHERE d.id = %s AND d.status = %s AND d.attempts_made = %s
"""


def hand_back_never_sent(conn: psycopg.Connection, older_than_s: float) -> list[tuple[int, int, str]]:
    """Attempts committed but never marked as sending (their worker died before the request): no call was
    placed, so undo them and let the destination be dialed again. Returns (account, campaign, slot member).
    Conditional on `sent_at IS NULL` under the row lock, so a worker waking late and this can't both win."""
    rows = conn.execute(_HAND_BACK_NEVER_SENT, (older_than_s,)).fetchall()
    return [(r[0], r[1], slot_member(r[2])) for r in rows]


def settle_as_placed(conn: psycopg.Connection, *, attempt_ids: list[int], note: str) -> int:
    """Unanswered sends with a sign of their call move to `sent` (their callbacks or lease settle them);
    `note` is added to their error message. Returns how many moved."""
    return conn.execute(_PLACED, (note, attempt_ids)).rowcount


def settle_as_never_placed(conn: psycopg.Connection, *, attempt_id: int, note: str, step: NextStep) -> bool:
    """An unanswered send with no sign of its call ends `unknown`, and its destination takes `step` while
    that attempt is still its own; one statement, committed. True if the attempt was still `dialing`."""
    ended = conn.execute(
        _NEVER_PLACED, (note, attempt_id, step.status.value, step.outcome.value, step.next_attempt_at)
    ).fetchall()
    return bool(ended)


def settle_as_unknown(
    conn: psycopg.Connection, *, attempt_id: int, destination_id: int, attempt_no: int,
    next_step: Callable[[], NextStep],
) -> bool:
    """An open attempt past its lease with no final event ends `unknown`, and its live destination takes the
    step `next_step` decides (asked only once the attempt has moved), in one transaction. False if the
    attempt was no longer open (a final event won)."""
    with conn.transaction():
        if not conn.execute(_LEASE_ENDED, (attempt_id,)).rowcount:
            return False
        step = next_step()
        conn.execute(
            _DESTINATION_UNKNOWN, (step.status.value, step.next_attempt_at, destination_id, attempt_no)
        )
    return True


def extend_lease(conn: psycopg.Connection, *, attempt_id: int, lease_s: float) -> None:
    """A call the carrier says is still live keeps its open attempt for another lease."""
    conn.execute(_EXTEND_LEASE, (lease_s, attempt_id))


def hand_back_orphan(
    conn: psycopg.Connection, *, destination_id: int, status: str, attempts_made: int
) -> int:
    """A live destination with no row for its current attempt (no request was sent) goes back to `pending`
    (`cancelled` in a cancelled campaign), its count set to the attempts it has. Returns rows moved."""
    return conn.execute(_ORPHAN_BACK_TO_PENDING, (destination_id, status, attempts_made)).rowcount


def move_orphan_on(
    conn: psycopg.Connection, *, destination_id: int, status: str, attempts_made: int, step: NextStep
) -> int:
    """A live destination whose current attempt is final takes `step`, if still as it was read."""
    return conn.execute(
        _ORPHAN_MOVE_ON,
        (step.status.value, step.outcome.value, step.next_attempt_at, destination_id, status, attempts_made),
    ).rowcount
