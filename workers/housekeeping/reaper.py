"""The reaper: the owner of every open attempt once its deadline passes. Attempts committed but never marked
as sending are handed back; sends never answered are settled by evidence once their window closes
(workers.housekeeping.send_evidence); attempts past their lease with no final event are reconciled with the
carrier or marked `unknown`; destinations left live whose attempt is final or gone are repaired. Their slots
are freed and the retry policy decides what follows; campaigns.store.settlements writes each move. Nothing
stays open forever."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from campaigns.accounts import load_account
from campaigns.call_options import answered_lease_s
from campaigns.retry_policy import NextStep, next_step, unless_cancelled
from campaigns.states import (
    FINAL_ATTEMPT,
    LIVE_DESTINATION,
    OPEN_ATTEMPT,
    AttemptStatus,
    CampaignState,
    Outcome,
    slot_member,
    sql_in,
)
from campaigns.store import settlements
from campaigns.store.event_store import store_event
from workers.callbacks.applier import apply_events, unattached_for_call, unattached_of_batch
from workers.callbacks.event_payload import reconciled_event
from workers.housekeeping.batch_lookup import BatchAnswer, ask_carrier, is_live, look_up_batch
from workers.housekeeping.call_limits import restore_lost_checks
from workers.housekeeping.send_evidence import settle_unanswered_sends
from workers.providers.registry import adapter_for
from workers.ratelimit import Budgets

log = logging.getLogger(__name__)

BATCH = 200
# A live worker marks its attempts as sending within seconds of committing them (its longest wait is a few
# bookings of MAX_RESERVATION_WAIT_S). Older unmarked ones belong to a dead worker. Safety does not rest on
# this number: marking and handing back are conditional on each other under the row lock.
NEVER_SENT_GRACE_S = 15


@dataclass
class ReapReport:
    expired: int = 0
    reconciled: int = 0
    unknown: int = 0
    still_live: int = 0  # the carrier says the call goes on: lease and slot extended
    never_sent: int = 0  # committed but its worker died before sending: handed back for dialing
    settled_placed: int = 0  # an unanswered send with a sign of its call: left to callbacks and lease
    never_placed: int = 0  # an unanswered send with no sign within its evidence window: retried or unknown
    orphaned: int = 0  # a live destination whose current attempt was final or missing: moved on
    limit_checks_restored: int = 0  # requests whose call-limit check Redis had lost, scheduled again


def _expired_attempts(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT a.*, d.number FROM call_attempt a JOIN destination d ON d.id = a.destination_id
               WHERE {sql_in("a.status", OPEN_ATTEMPT)} AND a.lease_expires_at < now()
               ORDER BY a.lease_expires_at LIMIT %s""",
            (BATCH,),
        ).fetchall()


LIVE = "live"


def _reconcile(conn: psycopg.Connection, client: httpx.Client, attempt: dict[str, Any]) -> bool | str:
    """Ask the carrier; store its answer as an event and apply it. True if that ended the attempt,
    LIVE if the carrier says the call is still going, False if it could not tell."""
    creds, _ = load_account(conn, attempt["account_id"])
    adapter = adapter_for(creds.provider)
    if not adapter.traits.api.has_call_status or not (attempt["request_uuid"] or attempt["call_uuid"]):
        return False
    event = ask_carrier(adapter, client, creds, attempt["request_uuid"], attempt["call_uuid"],
                        f"reconciling attempt {attempt['id']}")
    if event is None:
        return False
    if not event.is_final:
        return LIVE
    store_event(conn, reconciled_event(
        creds.provider, creds.account_id, event, batch_id=attempt["batch_id"],
        request_uuid=event.request_uuid or attempt["request_uuid"],
        call_uuid=event.call_uuid or attempt["call_uuid"],
        destination=event.destination or attempt["number"],
    ))
    conn.commit()
    report = apply_events(conn, unattached_for_call(attempt["request_uuid"], attempt["call_uuid"]), 10)
    return report.finals > 0


def _reconcile_by_batch(
    conn: psycopg.Connection, client: httpx.Client, attempt: dict[str, Any], batches: dict[Any, BatchAnswer]
) -> bool | str:
    """An attempt of a bulk whose callbacks were all lost (no id of its own): ask about every request id of
    its batch, once per pass, then see whether that settled this attempt."""
    batch_id = attempt["batch_id"]
    if attempt["request_uuid"] or attempt["call_uuid"] or batch_id is None:
        return False
    if batch_id not in batches:
        creds, _ = load_account(conn, attempt["account_id"])
        batches[batch_id] = answer = look_up_batch(conn, client, creds, adapter_for(creds.provider), batch_id)
        if answer.final:
            apply_events(conn, unattached_of_batch(batch_id), answer.final + 10)
    if is_live(batches[batch_id], attempt["number"]):
        return LIVE
    row = conn.execute("SELECT status FROM call_attempt WHERE id = %s", (attempt["id"],)).fetchone()
    return bool(row and row[0] in (AttemptStatus.COMPLETED, AttemptStatus.FAILED))


def _unknown_step(conn: psycopg.Connection, attempt: dict[str, Any], now: datetime) -> NextStep:
    """Where the destination of an attempt ended `unknown` goes, by its campaign's retry policy."""
    policy = conn.execute(
        "SELECT c.retry_policy, c.end_at, c.state, d.attempts_before_run FROM campaign c "
        "JOIN destination d ON d.campaign_id = c.id WHERE c.id = %s AND d.id = %s",
        (attempt["campaign_id"], attempt["destination_id"]),
    ).fetchone()
    step = next_step(
        Outcome.UNKNOWN,
        attempt["attempt_no"] - (policy[3] if policy else 0),  # the retry policy counts this run's tries
        policy[0] if policy else {},
        now,
        policy[1] if policy else None,
    )
    return unless_cancelled(step, policy is not None and policy[2] == CampaignState.CANCELLED)


def _mark_unknown(conn: psycopg.Connection, budgets: Budgets, attempt: dict[str, Any], now: datetime) -> bool:
    if not settlements.settle_as_unknown(
        conn, attempt_id=attempt["id"], destination_id=attempt["destination_id"],
        attempt_no=attempt["attempt_no"], next_step=lambda: _unknown_step(conn, attempt, now),
    ):
        return False
    budgets.release(
        attempt["account_id"],
        attempt["campaign_id"],
        [slot_member(attempt["id"])],
    )
    return True


def reap_expired_attempts(conn: psycopg.Connection, client: httpx.Client, budgets: Budgets) -> ReapReport:
    report = ReapReport()
    now = datetime.now(UTC)
    for account_id, campaign_id, member in settlements.hand_back_never_sent(conn, NEVER_SENT_GRACE_S):
        budgets.release(account_id, campaign_id, [member])
        report.never_sent += 1
    evidence = settle_unanswered_sends(conn, budgets, now)
    report.settled_placed, report.never_placed = evidence.placed, evidence.never_placed
    report.orphaned = repair_orphaned_destinations(conn, now)
    report.limit_checks_restored = restore_lost_checks(conn, budgets.client)
    batches: dict[Any, BatchAnswer] = {}
    for attempt in _expired_attempts(conn):
        report.expired += 1
        answer = _reconcile(conn, client, attempt) or _reconcile_by_batch(conn, client, attempt, batches)
        if answer == LIVE:
            _extend_lease(conn, budgets, attempt)
            report.still_live += 1
        elif answer:
            report.reconciled += 1
        elif _mark_unknown(conn, budgets, attempt, now):
            report.unknown += 1
    return report


# A destination is live (dialing, ringing, answered) only while its current attempt is open: the attempt and
# the destination move in one statement everywhere. One left live this long with its attempt final or gone
# (a bug, a hand edit) has no other owner: the reaper moves it on as the retry policy says, or, with no
# attempt row, back to pending (no row means no request was sent).
ORPHAN_GRACE_S = 60
_ORPHANED = f"""
SELECT d.id, d.status, d.attempts_made, a.outcome, a.id IS NULL AS missing, c.retry_policy, c.end_at,
       d.attempts_before_run, c.state = '{CampaignState.CANCELLED.value}' AS cancelled
FROM campaign c JOIN destination d ON d.campaign_id = c.id
LEFT JOIN call_attempt a ON a.destination_id = d.id AND a.attempt_no = d.attempts_made
WHERE c.state <> '{CampaignState.COMPLETED.value}' AND {sql_in("d.status", LIVE_DESTINATION)}
  AND d.updated_at < now() - make_interval(secs => %s)
  AND (a.id IS NULL OR {sql_in("a.status", FINAL_ATTEMPT)})
LIMIT %s
"""


def repair_orphaned_destinations(conn: psycopg.Connection, now: datetime) -> int:
    """Move on live destinations whose current attempt is final or missing; how many moved."""
    moved = 0
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_ORPHANED, (ORPHAN_GRACE_S, BATCH)).fetchall()
    for row in rows:
        destination_id, status, attempts_made = row["id"], row["status"], row["attempts_made"]
        if row["missing"]:
            moved += settlements.hand_back_orphan(
                conn, destination_id=destination_id, status=status, attempts_made=attempts_made
            )
            continue
        step = next_step(Outcome(row["outcome"] or Outcome.UNKNOWN),
                         row["attempts_made"] - row["attempts_before_run"],  # this run's tries
                         row["retry_policy"] or {}, now, row["end_at"])
        step = unless_cancelled(step, row["cancelled"])
        moved += settlements.move_orphan_on(
            conn, destination_id=destination_id, status=status, attempts_made=attempts_made, step=step
        )
    return moved


def _extend_lease(conn: psycopg.Connection, budgets: Budgets, attempt: dict[str, Any]) -> None:
    """A call longer than its lease is still a live call: it keeps its slot (the concurrency budget counts
    it) until the carrier reports its end, asked again after another lease."""
    row = conn.execute(
        "SELECT provider_options FROM campaign WHERE id = %s", (attempt["campaign_id"],)
    ).fetchone()
    lease_s = answered_lease_s((row[0] if row else None) or {})
    settlements.extend_lease(conn, attempt_id=attempt["id"], lease_s=lease_s)
    member = slot_member(attempt["id"])
    if not budgets.renew(attempt["account_id"], attempt["campaign_id"], member, lease_s):
        # The slot expired meanwhile: take it back so the budget counts this call (even past the max).
        budgets.acquire(attempt["account_id"], attempt["campaign_id"], [member], 10**9, None, lease_s)
