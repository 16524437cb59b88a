"""The dispatcher's moves: claim due destinations for dial chunks (-> `queued`, under a claim lease), and
expire what a finished schedule left undialed. workers.dispatch decides how many each campaign may claim.
And the claim's way back when its chunk task stopped on a database error (`release_failed_chunk`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from campaigns.states import CLAIMABLE_DESTINATION, EXPIRABLE_DESTINATION, CampaignState, slot_member, sql_in
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
UPDATE destination d SET status = 'queued', updated_at = now(), claim_account_id = %s,
    next_attempt_at = now() + make_interval(secs => %s)
FROM due WHERE d.id = due.id RETURNING d.id
"""
_EXPIRE_UNDIALED = f"""
UPDATE destination d SET status = 'expired', next_attempt_at = NULL, updated_at = now()
FROM campaign c WHERE d.campaign_id = c.id AND c.state = '{CampaignState.RUNNING.value}' AND c.end_at <= now()
  AND {sql_in("d.status", EXPIRABLE_DESTINATION)}"""


def claim_due_destinations(
    conn: psycopg.Connection, *, campaign_id: int, timezones: list[str], limit: int,
    account_id: int | None = None,
) -> list[int]:
    """Claim up to `limit` due destinations of the campaign in these zones, oldest due first, skipping rows
    another dispatcher holds: each becomes `queued` for QUEUED_LEASE_S, for the account that will dial it (its
    back-pressure counts it). Returns their ids, sorted."""
    rows = conn.execute(_CLAIM_DUE, (campaign_id, timezones, limit, account_id, QUEUED_LEASE_S)).fetchall()
    return sorted(r[0] for r in rows)


def expire_undialed(conn: psycopg.Connection) -> int:
    """Running campaigns whose end has passed: their destinations not yet dialed become `expired`. Returns
    how many."""
    return conn.execute(_EXPIRE_UNDIALED).rowcount


# A chunk task that stopped on a database error gives back, at once, what provably never reached the carrier:
# its destinations still `queued`, and the attempts it started but never marked as sending (sent_at IS NULL:
# the mark is committed before a request leaves). The second is the reaper's never-sent hand-back
# (campaigns.store.settlements) without its grace, which is there only because the reaper cannot tell a
# dead task from a slow one: this task knows it stopped. Under the attempt's row lock, like the reaper's: a
# mark that won keeps its attempt (sent_at is set, so it is not deleted); one that lost finds no row and
# sends nothing. Attempts marked as sending are left to the send evidence.
_RELEASE_FAILED_CHUNK = f"""
WITH gone AS (
    DELETE FROM call_attempt a USING destination d
    WHERE d.id = ANY(%(ids)s) AND d.id = a.destination_id AND d.status = 'dialing'
      AND d.attempts_made = a.attempt_no AND a.status = 'dialing' AND a.sent_at IS NULL
    RETURNING a.id, a.account_id, a.campaign_id, a.destination_id
), unsent AS (
    UPDATE destination d SET attempts_made = d.attempts_made - 1, next_attempt_at = NULL,
        status = CASE WHEN c.state = '{CampaignState.CANCELLED.value}' THEN 'cancelled' ELSE 'pending' END,
        updated_at = now()
    FROM gone JOIN campaign c ON c.id = gone.campaign_id WHERE d.id = gone.destination_id
), claimed AS (
    UPDATE destination SET status = 'pending', next_attempt_at = NULL, updated_at = now()
    WHERE id = ANY(%(ids)s) AND status = 'queued'
    RETURNING id
)
SELECT account_id, campaign_id, id FROM gone
UNION ALL SELECT NULL, NULL, NULL FROM claimed
"""


@dataclass
class ReleasedChunk:
    """What a failed chunk gave back: destinations moved to `pending` (due now), and the concurrency slots
    (account, campaign, slot member) of the attempts undone, for the caller to free in Redis."""

    destinations: int = 0
    slots: list[tuple[int, int, str]] = field(default_factory=list)


def release_failed_chunk(conn: psycopg.Connection, destination_ids: list[int]) -> ReleasedChunk:
    """Hand back, due now, the destinations of a chunk whose task stopped on a database error that never
    reached the carrier: those still `queued`, and those on an attempt never marked as sending (undone).
    One statement; committed on return (autocommit)."""
    released = ReleasedChunk()
    if not destination_ids:
        return released
    for account_id, campaign_id, attempt_id in conn.execute(_RELEASE_FAILED_CHUNK, {"ids": destination_ids}):
        released.destinations += 1
        if attempt_id is not None:
            released.slots.append((account_id, campaign_id, slot_member(attempt_id)))
    return released
