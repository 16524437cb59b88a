"""The dispatcher's moves: claim due destinations for dial chunks (-> `queued`, under a claim lease), and
expire what a finished schedule left undialed. workers.dispatch decides how many each campaign may claim.
"""

from __future__ import annotations

import psycopg

from campaigns.states import CLAIMABLE_DESTINATION, EXPIRABLE_DESTINATION, CampaignState, sql_in
from campaigns.store.dial_store import QUEUED_LEASE_S

# Due: pending/retry_wait due, or queued past their claim lease (the chunk task died). One condition for
# both the claim and the dispatcher's demand estimate, so whatever the claim would take is also counted as
# demand: an estimate blind to expired claims left them stranded once nothing else was due.
# (A queued row without a lease has no owner: it is due at once. Two claimants are safe: only one of them
# can move it queued -> dialing.)
DUE_NOW = f"""{sql_in("status", CLAIMABLE_DESTINATION)}
      AND (next_attempt_at IS NULL OR next_attempt_at <= now())"""
_CLAIM_DUE = f"""
WITH due AS (
    SELECT id FROM destination
    WHERE campaign_id = %s AND {DUE_NOW}
      AND timezone = ANY(%s)
    ORDER BY next_attempt_at NULLS FIRST, id
    LIMIT %s FOR UPDATE SKIP LOCKED)
UPDATE destination d SET status = 'queued', updated_at = now(),
    next_attempt_at = now() + make_interval(secs => %s)
FROM due WHERE d.id = due.id RETURNING d.id
"""
_EXPIRE_UNDIALED = f"""
UPDATE destination d SET status = 'expired', next_attempt_at = NULL, updated_at = now()
FROM campaign c WHERE d.campaign_id = c.id AND c.state = '{CampaignState.RUNNING.value}' AND c.end_at <= now()
  AND {sql_in("d.status", EXPIRABLE_DESTINATION)}"""


def claim_due_destinations(
    conn: psycopg.Connection, *, campaign_id: int, timezones: list[str], limit: int
) -> list[int]:
    """Claim up to `limit` due destinations of the campaign in these zones, oldest due first, skipping rows
    another dispatcher holds: each becomes `queued` for QUEUED_LEASE_S. Returns their ids, sorted."""
    rows = conn.execute(_CLAIM_DUE, (campaign_id, timezones, limit, QUEUED_LEASE_S)).fetchall()
    return sorted(r[0] for r in rows)


def expire_undialed(conn: psycopg.Connection) -> int:
    """Running campaigns whose end has passed: their destinations not yet dialed become `expired`. Returns
    how many."""
    return conn.execute(_EXPIRE_UNDIALED).rowcount
