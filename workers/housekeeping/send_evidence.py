"""Sends whose answer never came, settled by evidence, not by guessing.

An attempt marked as sending (`sent_at`) that is still `dialing` had a request that may have left: its
worker died after sending, or the carrier answered a 5xx, or the answer was lost (workers.providers.http
maps all of these to Ambiguous). The call may exist, so it is never redialled blindly. Once its evidence
window has closed (ring timeout + margin after the send, campaigns.call_options.evidence_window_s) the reaper
looks at what we know, after applying any stored callback of its request:

- a sign of this call (a callback tied to the attempt, or the carrier's ids on it): it was placed. It moves
  to `sent` and its callbacks or its lease settle it, as any accepted call;
- no sign of it, but one of another destination of the same bulk request: the request was accepted, so this
  call was placed too (or refused inside the bulk); `sent`, and left to its lease, never redialled;
- no sign at all: it is treated as never placed. The attempt ends `unknown` (a late final callback still
  settles it) and its slot is freed; the destination is retried by the transient policy, or ends `unknown`
  when the campaign says `"unsettled_send": "unknown"`. Its CPS tokens were never refunded.

Every move is conditional on the attempt still being `dialing` and the destination still being its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.call_options import evidence_window_s, unsettled_send_ends_unknown
from campaigns.campaign_accounts import has_fallbacks_sql
from campaigns.retry_policy import (
    TRANSIENT_BACKOFF_BASE_S,
    TRANSIENT_BACKOFF_CAP_S,
    NextStep,
    after_transient_error,
    next_step,
)
from campaigns.states import AttemptStatus, DestinationStatus, Outcome, slot_member, sql_in
from campaigns.store import settlements
from workers.callbacks.applier import apply_events, for_batches
from workers.ratelimit import Budgets
from workers.ratelimit.backoff import full_jitter_backoff

BATCH = 200
# No campaign's evidence window is shorter than this (a zero ring timeout and a zero margin are refused by
# nothing, but a send is never judged in its first seconds).
MIN_WINDOW_S = 5.0

_UNANSWERED = """
SELECT a.id, a.batch_id, c.provider_options, extract(epoch FROM now() - a.sent_at) AS age_s
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id
WHERE a.status = 'dialing' AND a.sent_at IS NOT NULL AND a.sent_at < now() - make_interval(secs => %s)
ORDER BY a.sent_at LIMIT %s
"""
# Statuses only an attempt of an accepted request reaches: the carrier took it, or a callback moved it on.
SHOWN_BY_THE_CARRIER = frozenset(
    {AttemptStatus.SENT, AttemptStatus.RINGING, AttemptStatus.ANSWERED, AttemptStatus.COMPLETED}
)
# What we know of each send, judged after its request's stored callbacks were applied.
_EVIDENCE = f"""
SELECT a.id, a.account_id, a.campaign_id, a.destination_id, a.attempt_no, c.provider_options,
       c.retry_policy, c.end_at,
       {has_fallbacks_sql("a.campaign_id")} AS has_fallbacks,
       (a.request_uuid IS NOT NULL OR a.call_uuid IS NOT NULL
        OR EXISTS (SELECT 1 FROM call_event e WHERE e.attempt_id = a.id)) AS placed,
       EXISTS (SELECT 1 FROM call_attempt b WHERE b.batch_id = a.batch_id AND b.id <> a.id
               AND (b.request_uuid IS NOT NULL OR b.call_uuid IS NOT NULL
                    OR {sql_in("b.status", SHOWN_BY_THE_CARRIER)})) AS request_accepted
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id
WHERE a.id = ANY(%s) AND a.status = 'dialing'
"""
PLACED_NOTE = "settled as placed: a sign of the call arrived"
ACCEPTED_NOTE = "settled as placed: another call of the same request showed itself"
NEVER_PLACED_NOTE = "no sign of the call within its evidence window: treated as never placed"


@dataclass
class EvidenceReport:
    placed: int = 0  # a sign of the call, or of its bulk request: left to its callbacks and lease
    never_placed: int = 0  # no sign at all: retried by the transient policy, or unknown


def never_placed_step(attempt_no: int, options: dict[str, Any], policy: dict[str, Any], now: datetime,
                      end_at: datetime | None, backoff_s: float) -> NextStep:
    """Where a destination goes when its send is treated as never placed (pure)."""
    if unsettled_send_ends_unknown(options):
        return next_step(Outcome.UNKNOWN, attempt_no, policy, now, end_at)
    step = after_transient_error(attempt_no, now, backoff_s)
    if end_at is not None and step.next_attempt_at is not None and step.next_attempt_at >= end_at:
        return NextStep(DestinationStatus.FAILED, None, Outcome.FAILED)
    return step


def _due(conn: psycopg.Connection) -> list[tuple[int, Any]]:
    """(attempt id, batch id) of unanswered sends whose evidence window has closed."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_UNANSWERED, (MIN_WINDOW_S, BATCH)).fetchall()
    return [(r["id"], r["batch_id"]) for r in rows
            if float(r["age_s"]) >= max(MIN_WINDOW_S, evidence_window_s(r["provider_options"] or {}))]


def settle_unanswered_sends(conn: psycopg.Connection, budgets: Budgets, now: datetime,
                            rng: random.Random | None = None) -> EvidenceReport:
    """Judge every send whose evidence window has closed (autocommit connection)."""
    report = EvidenceReport()
    due = _due(conn)
    if not due:
        return report
    batches = sorted({str(b) for _, b in due if b is not None})
    if batches:  # a callback stored but not yet applied is evidence too
        apply_events(conn, for_batches(batches), 1000)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_EVIDENCE, ([a for a, _ in due],)).fetchall()
    placed = [r["id"] for r in rows if r["placed"]]
    accepted = [r["id"] for r in rows if not r["placed"] and r["request_accepted"]]
    if placed:
        report.placed += settlements.settle_as_placed(conn, attempt_ids=placed, note=PLACED_NOTE)
    if accepted:
        report.placed += settlements.settle_as_placed(conn, attempt_ids=accepted, note=ACCEPTED_NOTE)
    rng = rng or random.Random()
    for row in rows:
        if row["placed"] or row["request_accepted"]:
            continue
        # With another account to go to, the retry needs no backoff: the dispatcher sends it to an account
        # whose circuit is closed, and the failing carrier's own breaker keeps it away from that one.
        backoff = 0.0 if row["has_fallbacks"] else full_jitter_backoff(
            row["attempt_no"], base=TRANSIENT_BACKOFF_BASE_S, cap=TRANSIENT_BACKOFF_CAP_S, rng=rng)
        step = never_placed_step(row["attempt_no"], row["provider_options"] or {}, row["retry_policy"] or {},
                                 now, row["end_at"], backoff)
        if settlements.settle_as_never_placed(conn, attempt_id=row["id"], note=NEVER_PLACED_NOTE, step=step):
            # one statement, committed: only now is its slot free to lend
            budgets.release(row["account_id"], row["campaign_id"], [slot_member(row["id"])])
            report.never_placed += 1
    return report
