"""The dial chunk's rows: the campaign and claimed destinations it reads, and its moves (queued -> dialing
with the attempt row; back to pending or queued when no call was made; on to failed or dnc), each a
conditional write on the expected current state.

Invariant 1 lives here: `start_attempts` moves a destination queued -> dialing and inserts its attempt row in
one committed transaction before any HTTP request, and only for destinations still `queued` with the
attempt count the caller saw. A re-delivered chunk finds them `dialing` and dials nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.blackouts import Blackouts, blackouts_of
from campaigns.campaign_accounts import accounts_sql, has_fallbacks_sql
from campaigns.states import CampaignState, DestinationStatus, allowed_sources, slot_member, sql_in
from campaigns.store.frequency_guard import cap_waits
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
WITH expected(id, attempts_made, attempt_id, batch_id) AS (
    SELECT * FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::uuid[])
),
won AS (
    UPDATE destination d
    SET status = 'dialing', attempts_made = d.attempts_made + 1, next_attempt_at = NULL,
        updated_at = now()
    FROM expected e
    WHERE d.id = e.id AND {sql_in("d.status", allowed_sources(DestinationStatus.DIALING))}
      AND d.attempts_made = e.attempts_made
    RETURNING d.id, d.attempts_made, d.run_no
)
INSERT INTO call_attempt (id, destination_id, campaign_id, account_id, attempt_no, batch_id, status,
                          lease_expires_at, run_no)
SELECT e.attempt_id, won.id, %s, %s, won.attempts_made, e.batch_id, 'dialing',
       now() + make_interval(secs => %s), won.run_no
FROM won JOIN expected e ON e.id = won.id
RETURNING id, destination_id, batch_id
"""
# An undo changes only what it still owns: the destination moves back only while its current attempt is the
# one this undo deleted (attempts_made = attempt_no), never after the reaper handed it back and another
# worker dialed it again.
_UNDO_UNSENT = """
WITH gone AS (
    DELETE FROM call_attempt WHERE id = ANY(%s) AND status = 'dialing'
    RETURNING destination_id, attempt_no
)
UPDATE destination d SET status = %s, attempts_made = d.attempts_made - 1,
    next_attempt_at = CASE WHEN %s = 'queued' THEN now() + make_interval(secs => %s) ELSE %s END,
    updated_at = now()
FROM gone WHERE d.id = gone.destination_id AND d.attempts_made = gone.attempt_no AND d.status = 'dialing'
"""
_FAIL_ATTEMPTS = """
WITH ended AS (
    UPDATE call_attempt SET status = 'failed', outcome = 'failed', error_message = %s, end_at = now()
    WHERE id = ANY(%s) AND status = 'dialing'
    RETURNING destination_id, attempt_no
)
UPDATE destination d SET status = %s, outcome = 'failed', next_attempt_at = %s, updated_at = now()
FROM ended WHERE d.id = ended.destination_id AND d.attempts_made = ended.attempt_no AND d.status = 'dialing'
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
    blackouts: Blackouts = Blackouts()  # public holidays observed, and the campaign's own dates
    # The account this chunk dials on (account_id above; the primary unless the chunk names another), and
    # what the chunk needs to know of it: whether it is still one of the campaign's accounts, its circuit
    # (campaigns.circuits), and whether the campaign has another account to fail over to.
    in_campaign: bool = True
    circuit: str = "closed"
    has_fallbacks: bool = False


@dataclass(frozen=True)
class QueuedDestination:
    """A claimed destination as this task read it, with the id its next attempt will have if this task
    makes it (reserved from the sequence in the same read, so the concurrency slot can be taken in the
    attempt's name before the row exists)."""

    id: int
    number: str
    timezone: str
    attempts_made: int
    attempt_id: int
    attempts_before_run: int = 0  # attempts of earlier runs (campaigns.runs): not counted by retry limits

    @property
    def next_attempt_no(self) -> int:
        return self.attempts_made + 1

    @property
    def next_try_this_run(self) -> int:
        return self.next_attempt_no - self.attempts_before_run

    @property
    def slot_member(self) -> str:
        """The concurrency-slot member of the attempt about to be made: its own attempt id, so no other
        attempt of the destination (a redelivered chunk, a later retry) can ever free it."""
        return slot_member(self.attempt_id)


@dataclass(frozen=True)
class StartedAttempt:
    attempt_id: int
    destination: QueuedDestination
    batch_id: uuid.UUID | None = None  # the request's (None where a caller does not need it)


_LOAD_CAMPAIGN = f"""
SELECT c.*, coalesce(%(account)s, c.account_id) AS dial_account_id,
       (coalesce(%(account)s, c.account_id) = c.account_id OR f.account_id IS NOT NULL) AS in_campaign,
       f.caller_id AS account_caller_id, coalesce(ac.state, 'closed') AS circuit,
       {has_fallbacks_sql("c.id")} AS has_fallbacks
FROM campaign c
LEFT JOIN campaign_fallback_account f ON f.campaign_id = c.id AND f.account_id = %(account)s
LEFT JOIN account_circuit ac ON ac.account_id = coalesce(%(account)s, c.account_id)
WHERE c.id = %(campaign)s
"""


def load_campaign(
    conn: psycopg.Connection, campaign_id: int, account_id: int | None = None
) -> CampaignForDial | None:
    """The campaign as a chunk dials it on `account_id` (its primary when None): that account's caller id
    (its own, else the campaign's) and circuit."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_LOAD_CAMPAIGN, {"campaign": campaign_id, "account": account_id}).fetchone()
    if row is None or row["dial_account_id"] is None:
        return None
    return CampaignForDial(
        id=row["id"],
        state=row["state"],
        account_id=row["dial_account_id"],
        caller_id=row["account_caller_id"] or row["caller_id"] or "",
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
        blackouts=blackouts_of(row),
        in_campaign=bool(row["in_campaign"]),
        circuit=row["circuit"],
        has_fallbacks=bool(row["has_fallbacks"]),
    )


def queued_destinations(conn: psycopg.Connection, ids: list[int]) -> list[QueuedDestination]:
    """The still-queued destinations among `ids`, each with an attempt id reserved for it (sequence values
    an attempt never uses are gaps, nothing more)."""
    rows = conn.execute(
        "SELECT id, number, timezone, attempts_made, nextval('call_attempt_id_seq'), attempts_before_run "
        "FROM destination "
        "WHERE id = ANY(%s) AND status = 'queued' "
        "ORDER BY id",
        (ids,),
    ).fetchall()
    return [QueuedDestination(*row) for row in rows]


def on_dnc_sql(number_sql: str, campaign_sql: str) -> str:
    """The dial-time do-not-call lookup as an SQL condition on a number and a campaign expression: the global
    list (dnc_number) or the list of any of the campaign's accounts (account_dnc_number, campaigns.dnc), its
    primary and its fallbacks, whichever account dials it now: a number that opted out on one carrier has
    opted out of the campaign. The one definition both the chunk's screen (`dnc_numbers`) and the
    per-request check (`mark_sending`) use."""
    return (
        f"(EXISTS (SELECT 1 FROM dnc_number x WHERE x.number = {number_sql}) OR EXISTS (SELECT 1 FROM "
        f"account_dnc_number y WHERE y.number = {number_sql} "
        f"AND y.account_id IN ({accounts_sql(campaign_sql)})))"
    )


def dnc_numbers(conn: psycopg.Connection, numbers: list[str], campaign_id: int) -> set[str]:
    """Which of these numbers the campaign may not call (through `on_dnc_sql`): at claim
    (workers.dispatch.dnc_screen) and in the chunk's screen."""
    rows = conn.execute(
        f"SELECT n FROM unnest(%s::text[]) AS n WHERE {on_dnc_sql('n', '%s::bigint')}",
        (numbers, campaign_id, campaign_id),
    ).fetchall()
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
    batch_id: uuid.UUID | Mapping[int, uuid.UUID],
    lease_s: float,
) -> list[StartedAttempt]:
    """Commit queued -> dialing and one attempt row per destination, before the request is sent.
    `batch_id`: the request's, or one per destination id when several single requests start at once."""
    by_id = {d.id: d for d in destinations}
    # One statement, committed before this returns (autocommit); with frequency caps, one transaction with
    # the cap check under per-number locks (campaigns.store.frequency_guard), and over-cap ones handed back
    # until their cap frees.
    with cap_waits(conn, campaign.account_id, [d.number for d in destinations]) as waits:
        _hand_back_over_cap(conn, destinations, waits)
        allowed = [d for d in destinations if d.number not in waits]
        rows = conn.execute(
            _START_ATTEMPTS,
            (
                [d.id for d in allowed],
                [d.attempts_made for d in allowed],
                [d.attempt_id for d in allowed],
                [batch_id if isinstance(batch_id, uuid.UUID) else batch_id[d.id] for d in allowed],
                campaign.id,
                campaign.account_id,
                lease_s,
            ),
        ).fetchall()
    return [StartedAttempt(attempt_id=row[0], destination=by_id[row[1]], batch_id=row[2]) for row in rows]


def _hand_back_over_cap(
    conn: psycopg.Connection, destinations: list[QueuedDestination], waits: dict[str, datetime]
) -> None:
    """Hand back the destinations whose number a cap holds back, each until the moment it frees."""
    by_time: dict[datetime, list[int]] = {}
    for dest in destinations:
        if dest.number in waits:
            by_time.setdefault(waits[dest.number], []).append(dest.id)
    for not_before, ids in by_time.items():
        hand_back(conn, ids, not_before)


def undo_unsent_attempts(
    conn: psycopg.Connection,
    attempts: list[StartedAttempt],
    not_before: datetime | None,
    *,
    back_to: str = "pending",
) -> int:
    """No call exists (429, auth, balance, a refused bulk, no tokens in time): undo the attempts still
    `dialing`, and move back only the destinations whose current attempt was one of them. `back_to` is
    `queued` when this task will send them again itself (within the claim lease), `pending` to hand them to
    the dispatcher from `not_before`. Returns how many destinations moved back."""
    if not attempts:
        return 0
    ids = [a.attempt_id for a in attempts]
    return conn.execute(_UNDO_UNSENT, (ids, back_to, back_to, QUEUED_LEASE_S, not_before)).rowcount


def fail_attempts(
    conn: psycopg.Connection,
    attempts: list[StartedAttempt],
    *,
    message: str,
    destination_status: str,
    next_attempt_at: datetime | None,
) -> None:
    """The request reached the carrier and was refused: the attempts still `dialing` fail, and their
    destinations follow only while those attempts are still theirs."""
    conn.execute(
        _FAIL_ATTEMPTS,
        (message[:2000], [a.attempt_id for a in attempts], destination_status, next_attempt_at),
    )


def has_unapplied_events(conn: psycopg.Connection, ids: list[str]) -> bool:
    """Did any callback for these request/call ids arrive before they were recorded?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM call_event WHERE applied_at IS NULL "
        "AND (request_uuid = ANY(%s) OR call_uuid = ANY(%s)))",
        (ids, ids),
    ).fetchone()
    return bool(row and row[0])


def pause_account_campaigns(conn: psycopg.Connection, account_id: int, reason: str) -> int:
    """Credentials or balance are wrong: every running campaign of the account that has no other account to
    fail over to stops until a person acts. Campaigns with fallbacks go on: the account's circuit is open
    (campaigns.circuits) and the dispatcher routes around it."""
    cur = conn.execute(
        f"UPDATE campaign SET state = '{CampaignState.PAUSED.value}', state_reason = %s, updated_at = now() "
        f"WHERE account_id = %s AND state = '{CampaignState.RUNNING.value}' "
        f"AND NOT {has_fallbacks_sql('campaign.id')}",
        (reason[:500], account_id),
    )
    return cur.rowcount


def count_throttle(conn: psycopg.Connection, campaign_id: int) -> None:
    conn.execute("UPDATE campaign SET throttled_count = throttled_count + 1 WHERE id = %s", (campaign_id,))


def record_batch(
    conn: psycopg.Connection, batch_id: uuid.UUID, account_id: int, request_uuids: list[str]
) -> None:
    """Keep a bulk answer's request ids on its batch (idempotent)."""
    if not request_uuids:
        return
    conn.execute(
        """INSERT INTO provider_batch (batch_id, account_id, request_uuids) VALUES (%s, %s, %s)
           ON CONFLICT (batch_id) DO NOTHING""",
        (batch_id, account_id, request_uuids),
    )
