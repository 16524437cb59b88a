"""Destinations moved by the operator's controls and by runs: cancel, reset into a new run, expire at a
run's end. Each runs in its caller's transaction, beside the campaign's own state change."""

from __future__ import annotations

import psycopg

from campaigns.states import (
    EXPIRABLE_DESTINATION,
    RUN_RESET_TARGET,
    RUN_RESETTABLE,
    UNDIALED_DESTINATION,
    AttemptStatus,
    DestinationStatus,
    allowed_sources,
    sql_in,
)

D = DestinationStatus

# Rows locked in id order, as the dial task's and the applier's statements take them: no deadlock.
LOCK_CANCELLABLE = f"""
SELECT id FROM destination WHERE campaign_id = %s AND {sql_in("status", UNDIALED_DESTINATION | {D.DIALING})}
ORDER BY id FOR UPDATE"""
CANCEL_UNDIALED = f"""
UPDATE destination SET status = '{D.CANCELLED.value}', next_attempt_at = NULL, updated_at = now()
WHERE campaign_id = %s AND {sql_in("status", UNDIALED_DESTINATION)}"""
# Attempts committed but not yet marked as sending never reach the carrier: cancel undoes them, conditional
# on `sent_at IS NULL` under the row lock, so the dial task's mark (campaigns.store's `mark_sending`) and
# this cannot both win. Their destinations are cancelled too: a new call stops within the mark's lead.
CANCEL_UNSENT = f"""
WITH gone AS (
    DELETE FROM call_attempt a USING destination d
    WHERE d.id = a.destination_id AND d.campaign_id = %s AND d.status = '{D.DIALING.value}'
      AND d.attempts_made = a.attempt_no AND a.status = '{AttemptStatus.DIALING.value}' AND a.sent_at IS NULL
    RETURNING a.destination_id)
UPDATE destination d SET status = '{D.CANCELLED.value}', attempts_made = d.attempts_made - 1,
    next_attempt_at = NULL, updated_at = now()
FROM gone WHERE d.id = gone.destination_id AND {sql_in("d.status", allowed_sources(D.CANCELLED))}"""

RESET_FOR_RERUN = f"""
UPDATE destination SET status = '{RUN_RESET_TARGET.value}', outcome = NULL, next_attempt_at = NULL,
    run_no = %(run_no)s, attempts_before_run = attempts_made, updated_at = now()
WHERE campaign_id = %(campaign_id)s AND (
    status = '{D.PENDING.value}'
    OR ({sql_in("status", RUN_RESETTABLE)}
        AND (%(only)s::text[] IS NULL OR outcome = ANY(%(only)s) OR status = ANY(%(only)s))))"""
EXPIRE_RUN_LEFTOVERS = f"""
UPDATE destination SET status = '{D.EXPIRED.value}', next_attempt_at = NULL, updated_at = now()
WHERE campaign_id = %s AND run_no = %s AND {sql_in("status", EXPIRABLE_DESTINATION)}"""


def cancel_destinations(conn: psycopg.Connection, *, campaign_id: int) -> int:
    """A cancelled campaign's destinations not yet dialed, and those whose attempt was not yet sent, become
    cancelled; calls already placed go on. Returns how many."""
    conn.execute(LOCK_CANCELLABLE, (campaign_id,))
    undialed = conn.execute(CANCEL_UNDIALED, (campaign_id,)).rowcount
    return undialed + cancel_unsent(conn, campaign_id=campaign_id)


def cancel_unsent(conn: psycopg.Connection, *, campaign_id: int) -> int:
    """Attempts of the campaign committed but never marked as sending are deleted and their destinations
    cancelled (their attempt count undone). Returns how many destinations."""
    return conn.execute(CANCEL_UNSENT, (campaign_id,)).rowcount


def reset_for_rerun(
    conn: psycopg.Connection, *, campaign_id: int, run_no: int, only: list[str] | None
) -> int:
    """The destinations a new run takes start a fresh cycle in it: every pending one, and the final ones
    (RUN_RESETTABLE) whose outcome or status is in `only` (all of them when None). Returns how many."""
    params = {"run_no": run_no, "campaign_id": campaign_id, "only": only}
    return conn.execute(RESET_FOR_RERUN, params).rowcount


def expire_run_leftovers(conn: psycopg.Connection, *, campaign_id: int, run_no: int) -> int:
    """The run's end came: its destinations not yet dialed expire. Returns how many."""
    return conn.execute(EXPIRE_RUN_LEFTOVERS, (campaign_id, run_no)).rowcount
