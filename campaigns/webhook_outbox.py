"""The webhook outbox (`webhook_delivery`): one row per event and endpoint, written by the schema's triggers
in the transaction of the state change. Here: the claim of the next sends, the record of each try, the listing
and the retention of delivered rows.

Order: the events of one endpoint and one order key (a destination's, or a campaign's own: its runs, its
completion, its pauses) go out in id order, one at a time: a claim takes only the head of each queue, and a
head in flight is not due again until its lease passes. A failed head is retried with backoff and jitter
until DIALER_WEBHOOK_RETRY_FOR_S after its event, then given up (`failed`), and the next one goes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row


class DeliveryState(StrEnum):
    """`webhook_delivery.state`."""

    PENDING = "pending"  # not yet delivered: due at next_attempt_at (or in flight until then)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: still failing when its retry window closed


PENDING, DELIVERED, FAILED = (s.value for s in DeliveryState)


def retry_delay_s(tries: int, *, base_s: float, max_s: float, rand: float) -> float:
    """Exponential backoff with jitter: between half and all of min(max_s, base_s * 2^(tries - 1)). `rand` in
    [0, 1) is the jitter (random.random() in use), so two receivers' retries spread out."""
    ceiling = min(max_s, base_s * 2.0 ** max(0, min(tries - 1, 60)))
    return ceiling / 2 + rand * ceiling / 2


@dataclass(frozen=True)
class ClaimedSend:
    """A delivery taken for one try: everything its POST needs."""

    id: int
    message_id: str
    body: str  # the payload as stored, sent and signed byte for byte
    tries: int  # this one included
    created_at: datetime
    url: str
    secret_encrypted: str


# The head of every (endpoint, order key) queue that is due, at most `per_endpoint` of one endpoint, so one
# receiver that is down cannot hold every send of a pass; its lease is the next try's time.
CLAIM = f"""
WITH heads AS (
    SELECT DISTINCT ON (endpoint_id, order_key) id, endpoint_id, next_attempt_at
    FROM webhook_delivery WHERE state = '{PENDING}' ORDER BY endpoint_id, order_key, id
), due AS (
    SELECT id FROM (
        SELECT id, next_attempt_at,
               row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS nth
        FROM heads WHERE next_attempt_at <= now()) ranked
    WHERE nth <= %(per_endpoint)s ORDER BY next_attempt_at, id LIMIT %(limit)s
)
UPDATE webhook_delivery w SET attempts = w.attempts + 1,
       next_attempt_at = now() + make_interval(secs => %(lease_s)s)
FROM due, webhook_endpoint e
WHERE w.id = due.id AND e.id = w.endpoint_id AND w.state = '{PENDING}' AND w.next_attempt_at <= now()
RETURNING w.id, w.message_id, w.payload::text AS body, w.attempts AS tries, w.created_at, e.url,
          e.secret_encrypted"""


def claim_sends(
    conn: psycopg.Connection, *, limit: int, per_endpoint: int, lease_s: float
) -> list[ClaimedSend]:
    """Take up to `limit` due heads for one try each (committed at once: a process that dies with them leaves
    them to come back at their lease, under the same webhook-id)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = {"limit": limit, "per_endpoint": per_endpoint, "lease_s": lease_s}
        rows = cur.execute(CLAIM, params).fetchall()
    return [ClaimedSend(**row) for row in sorted(rows, key=lambda r: r["id"])]


@dataclass(frozen=True)
class TryResult:
    """What one POST came to: a status (2xx delivered) or an error without one."""

    delivery_id: int
    status: int | None
    error: str | None
    retry_in_s: float  # if it failed: the backoff before the next try

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


RECORD_DELIVERED = f"""
UPDATE webhook_delivery SET state = '{DELIVERED}', last_status = %s, last_error = NULL, finished_at = now()
WHERE id = %s AND state = '{PENDING}'"""
# A failure waits its backoff, or is given up when the next try would fall past the retry window.
RECORD_FAILED = f"""
UPDATE webhook_delivery SET last_status = %(status)s, last_error = %(error)s,
    state = CASE WHEN now() + make_interval(secs => %(retry_in_s)s)
                      > created_at + make_interval(secs => %(retry_for_s)s)
                 THEN '{FAILED}' ELSE state END,
    finished_at = CASE WHEN now() + make_interval(secs => %(retry_in_s)s)
                            > created_at + make_interval(secs => %(retry_for_s)s)
                       THEN now() END,
    next_attempt_at = now() + make_interval(secs => %(retry_in_s)s)
WHERE id = %(id)s AND state = '{PENDING}'"""


def record_tries(conn: psycopg.Connection, results: list[TryResult], *, retry_for_s: float) -> None:
    """Each try's result, in one transaction."""
    with conn.transaction():
        for r in results:
            if r.delivered:
                conn.execute(RECORD_DELIVERED, (r.status, r.delivery_id))
            else:
                conn.execute(RECORD_FAILED, {"status": r.status, "error": (r.error or "")[:500] or None,
                                             "retry_in_s": r.retry_in_s, "retry_for_s": retry_for_s,
                                             "id": r.delivery_id})


ANY_DUE = f"""
SELECT EXISTS (SELECT 1 FROM webhook_delivery WHERE state = '{PENDING}' AND next_attempt_at <= now())"""


def any_due(conn: psycopg.Connection) -> bool:
    """Is any delivery due now? One look at the due index: what a tick costs when there is nothing to send."""
    row = conn.execute(ANY_DUE).fetchone()
    return bool(row and row[0])


LIST = f"""
SELECT w.id, w.event_type, w.message_id, w.campaign_id, e.url, w.attempts, w.state, w.last_status,
       w.last_error, CASE WHEN w.state = '{PENDING}' THEN w.next_attempt_at END AS next_try, w.created_at
FROM webhook_delivery w JOIN webhook_endpoint e ON e.id = w.endpoint_id
WHERE (%(campaign)s::bigint IS NULL OR w.campaign_id = %(campaign)s)
  AND (NOT %(failed)s OR w.state = '{FAILED}' OR (w.state = '{PENDING}' AND w.attempts > 0))
ORDER BY w.id DESC LIMIT %(limit)s"""


def list_deliveries(
    conn: psycopg.Connection, *, campaign_id: int | None = None, failed: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest deliveries, newest first; `failed`: those given up or still failing."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(LIST, {"campaign": campaign_id, "failed": failed, "limit": limit}).fetchall()


# Retention (campaigns.retention): delivered rows finished before the cut-off, a batch at a time. Failed ones
# and pending ones are kept whatever their age.
PRUNE_DELIVERED = f"""
WITH gone AS (
    DELETE FROM webhook_delivery WHERE id IN (
        SELECT id FROM webhook_delivery WHERE state = '{DELIVERED}' AND finished_at < %(cutoff)s
        ORDER BY finished_at LIMIT %(batch)s)
    RETURNING id)
SELECT count(*) FROM gone
"""
