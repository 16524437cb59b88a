"""Apply stored carrier events (call_event rows) to attempts and destinations, in lifecycle order.

Each event is applied once (applied_at), under row locks, and only moves things forward: a late ring never
overwrites a hangup and a duplicate hangup changes nothing. An event whose attempt cannot be found yet (its
ids not recorded) stays unapplied and is tried again when the ids are recorded, or by a sweep.

A batch costs a fixed handful of statements whatever its size: select the events, match them to attempts
in one query, lock those attempts and destinations, compute every transition in memory (`advance`, pure),
write attempts, destinations and events back with one UPDATE each, then free the ended calls' slots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.rows import dict_row

from campaigns.call_options import answered_lease_s
from campaigns.retry_policy import NextStep, after_carrier_throttle, next_step
from campaigns.states import ATTEMPT_RANK, AttemptStatus, DestinationStatus, Outcome

log = logging.getLogger(__name__)

# Which attempt status an event kind moves to; STATUS events only fill fields.
KIND_TO_ATTEMPT = {"ring": AttemptStatus.RINGING, "answer": AttemptStatus.ANSWERED,
                   "machine": AttemptStatus.ANSWERED, "hangup": AttemptStatus.COMPLETED}
KIND_TO_DESTINATION = {"ring": DestinationStatus.RINGING, "answer": DestinationStatus.ANSWERED,
                       "machine": DestinationStatus.ANSWERED}
OPEN_ATTEMPT = frozenset({AttemptStatus.DIALING, AttemptStatus.SENT, AttemptStatus.RINGING,
                          AttemptStatus.ANSWERED})
# Destination statuses a final event may finish (unknown: the reaper gave up, the carrier spoke later).
FINISHABLE_DESTINATION = frozenset({"dialing", "ringing", "answered", "unknown"})

T = TypeVar("T")

SlotRelease = Callable[[int, int, list[str]], None]  # (account_id, campaign_id, members)
SlotRenew = Callable[[int, int, list[tuple[str, float]]], None]  # (account, campaign, [(member, lease)])
PolicyOf = Callable[[int], tuple[dict[str, Any], datetime | None, float]]


@dataclass
class ApplyReport:
    applied: int = 0
    unmatched: int = 0
    finals: int = 0
    seen: int = 0      # events looked at (applied or not)
    last_id: int = 0   # highest event id looked at


@dataclass
class Effects:
    """What applying events asks of the world beyond the rows: slots to free or renew."""

    release: list[tuple[int, int, str]] = field(default_factory=list)        # account, campaign, member
    renew: list[tuple[int, int, str, float]] = field(default_factory=list)   # … and lease seconds


def _can_move(current: str, target: AttemptStatus) -> bool:
    """Forward only; an `unknown` attempt may still be completed by a late final event."""
    if target == AttemptStatus.COMPLETED and current == AttemptStatus.UNKNOWN:
        return True
    return ATTEMPT_RANK[AttemptStatus(current)] < ATTEMPT_RANK[target]


def _e164(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("sip:") or value.startswith("+"):
        return value
    return "+" + value if value.isdigit() else value


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _remember_machine(attempt: dict[str, Any], dest: dict[str, Any]) -> None:
    """A machine-detection result outlives the hangup that follows it: a Bandwidth disconnect says only
    "hangup" with an answer time. Before the hangup, the attempt's outcome holds it for the hangup to keep;
    after an `answered` hangup (the result arrived late), it corrects the outcome."""
    if attempt["status"] != AttemptStatus.COMPLETED:
        attempt["outcome"] = Outcome.MACHINE.value
    elif attempt["outcome"] == Outcome.ANSWERED:
        attempt["outcome"] = Outcome.MACHINE.value
        if dest["outcome"] == Outcome.ANSWERED and dest["attempts_made"] == attempt["attempt_no"]:
            dest.update(outcome=Outcome.MACHINE.value, changed=True)


def advance(attempt: dict[str, Any], dest: dict[str, Any], kind: str, parsed: dict[str, Any],
            ids: tuple[str | None, str | None], now: datetime, policy_of: PolicyOf, effects: Effects) -> bool:
    """Apply one event to the in-memory attempt and destination rows (pure apart from `effects`).
    Returns True if it ended the attempt."""
    attempt["request_uuid"] = attempt["request_uuid"] or ids[0]
    attempt["call_uuid"] = attempt["call_uuid"] or ids[1]
    attempt["ring_at"] = attempt["ring_at"] or _time(parsed.get("ring_at"))
    attempt["answer_at"] = attempt["answer_at"] or _time(parsed.get("answer_at"))
    provider_status = parsed.get("provider_status")
    target = KIND_TO_ATTEMPT.get(kind)
    current = attempt["status"]
    if target is None:  # a status update: its word counts only while the call is open
        if current in OPEN_ATTEMPT and provider_status:
            attempt["provider_status"] = provider_status
        return False
    if kind == "machine":
        _remember_machine(attempt, dest)
    if not _can_move(current, target):
        return False  # a duplicate, or late: nothing else changes
    attempt["status"] = target.value
    attempt["provider_status"] = provider_status or attempt["provider_status"]
    member = f"{attempt['destination_id']}:{attempt['attempt_no']}"
    ours = dest["attempts_made"] == attempt["attempt_no"]  # a later attempt owns the destination now
    if target != AttemptStatus.COMPLETED:
        dest_target = KIND_TO_DESTINATION[kind]
        behind = dest["status"] == "dialing" or (dest["status"] == "ringing" and dest_target != "ringing")
        if ours and behind:
            dest["status"] = dest_target.value
            dest["changed"] = True
            if kind in ("answer", "machine"):
                lease = policy_of(attempt["campaign_id"])[2]
                effects.renew.append((attempt["account_id"], attempt["campaign_id"], member, lease))
        return False
    outcome = Outcome(parsed.get("outcome") or Outcome.UNKNOWN)
    if outcome == Outcome.ANSWERED and attempt["outcome"] == Outcome.MACHINE:
        outcome = Outcome.MACHINE  # a machine result came first (Bandwidth: its own callback)
    attempt.update(outcome=outcome.value, hangup_cause=parsed.get("hangup_cause"),
                   end_at=_time(parsed.get("end_at")) or attempt["end_at"] or now,
                   duration=parsed.get("duration"), billed_duration=parsed.get("billed_duration"),
                   cost=Decimal(parsed["cost"]) if parsed.get("cost") else None)
    if current != AttemptStatus.UNKNOWN:  # the reaper already freed unknown ones
        effects.release.append((attempt["account_id"], attempt["campaign_id"], member))
    if ours and dest["status"] in FINISHABLE_DESTINATION:
        retry_policy, end_at, _ = policy_of(attempt["campaign_id"])
        step: NextStep
        if parsed.get("throttled"):
            step = after_carrier_throttle(attempt["attempt_no"], now)
        else:
            step = next_step(outcome, attempt["attempt_no"], retry_policy, now, end_at)
        dest.update(status=step.status.value, outcome=step.outcome.value,
                    next_attempt_at=step.next_attempt_at, changed=True)
    return True


class CampaignPolicies:
    """Retry policy, end and answered-call lease of each campaign, read once per batch."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.cache: dict[int, tuple[dict[str, Any], datetime | None, float]] = {}

    def __call__(self, campaign_id: int) -> tuple[dict[str, Any], datetime | None, float]:
        if campaign_id not in self.cache:
            row = self.conn.execute(
                "SELECT retry_policy, end_at, provider_options FROM campaign WHERE id = %s",
                (campaign_id,)).fetchone()
            lease = answered_lease_s((row[2] if row else None) or {})
            self.cache[campaign_id] = (row[0] or {}, row[1], lease) if row else ({}, None, lease)
        return self.cache[campaign_id]


def _slot_ops() -> tuple[SlotRelease, SlotRenew]:
    from workers.budgets_client import get_budgets

    budgets = get_budgets()

    def release(account_id: int, campaign_id: int, members: list[str]) -> None:
        budgets.release(account_id, campaign_id, members)

    def renew(account_id: int, campaign_id: int, leases: list[tuple[str, float]]) -> None:
        budgets.renew_many(account_id, campaign_id, [(m, lease) for m, lease in leases if lease > 0])

    return release, renew


# The attempt of each event: by (batch, destination) first, then a request_uuid (shared by a bulk request:
# pick by destination), then a call_uuid. One query for the whole batch. The (batch, destination) match goes
# through the batch's campaign and the unique (campaign, number) index: two index lookups per event, where
# joining a bulk batch's thousand attempts to their numbers cost a thousand per event. (The batch is a
# FILTER, not a join condition, so the planner cannot pick the batch index and read the whole batch.)
MATCH_ATTEMPTS = """
WITH ev AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%s::jsonb)
            AS r(id bigint, batch_id uuid, dest text, request_uuid text, call_uuid text)),
batch_campaign AS MATERIALIZED (
    SELECT b.batch_id, (SELECT a.campaign_id FROM call_attempt a WHERE a.batch_id = b.batch_id LIMIT 1)
           AS campaign_id
      FROM (SELECT DISTINCT batch_id FROM ev WHERE batch_id IS NOT NULL AND dest IS NOT NULL) b)
SELECT ev.id, coalesce(
    (SELECT min(a.id) FILTER (WHERE a.batch_id = ev.batch_id) FROM batch_campaign bc
       JOIN destination d ON d.campaign_id = bc.campaign_id AND d.number = ev.dest
       JOIN call_attempt a ON a.destination_id = d.id
      WHERE bc.batch_id = ev.batch_id),
    (SELECT CASE WHEN count(*) = 1 THEN min(a.id) ELSE min(a.id) FILTER (WHERE d.number = ev.dest) END
       FROM call_attempt a JOIN destination d ON d.id = a.destination_id
      WHERE ev.request_uuid IS NOT NULL AND a.request_uuid = ev.request_uuid),
    (SELECT CASE WHEN count(*) = 1 THEN min(a.id) ELSE min(a.id) FILTER (WHERE d.number = ev.dest) END
       FROM call_attempt a JOIN destination d ON d.id = a.destination_id
      WHERE ev.call_uuid IS NOT NULL AND a.call_uuid = ev.call_uuid))
FROM ev
"""

LOCK_ATTEMPTS = """
SELECT a.id, a.destination_id, a.campaign_id, a.account_id, a.attempt_no, a.status, a.request_uuid,
       a.call_uuid, a.provider_status, a.outcome, a.hangup_cause, a.ring_at, a.answer_at, a.end_at,
       a.duration, a.billed_duration, a.cost, d.status AS d_status, d.attempts_made AS d_attempts,
       d.outcome AS d_outcome, d.next_attempt_at AS d_next
FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.id = ANY(%s) ORDER BY a.id FOR UPDATE OF a, d
"""

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
WHERE a.id = v.id
"""
WRITE_DESTINATIONS = """
UPDATE destination d SET status = v.status, outcome = v.outcome, next_attempt_at = v.next_attempt_at,
    updated_at = now()
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, status text, outcome text, next_attempt_at timestamptz)
WHERE d.id = v.id
"""
MARK_APPLIED = """
UPDATE call_event e SET applied_at = now(), attempt_id = v.attempt_id
FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, attempt_id bigint) WHERE e.id = v.id
"""


def _records(names: Sequence[str], rows: list[tuple[Any, ...]]) -> tuple[str]:
    """Rows as one JSON array parameter for jsonb_to_recordset: one orjson call instead of psycopg dumping
    each array element in Python."""
    return (orjson.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str).decode(),)


def _locked_rows(conn: psycopg.Connection, events: list[dict[str, Any]]
                 ) -> tuple[dict[int, int], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """(event id -> attempt id, attempts by id, destinations by id), attempts and destinations locked."""
    keys = _records(("id", "batch_id", "dest", "request_uuid", "call_uuid"),
                    [(e["id"], e["batch_id"], _e164(e["destination"]), e["request_uuid"], e["call_uuid"])
                     for e in events])
    matched = {eid: aid for eid, aid in conn.execute(MATCH_ATTEMPTS, keys).fetchall() if aid is not None}
    attempts: dict[int, dict[str, Any]] = {}
    destinations: dict[int, dict[str, Any]] = {}
    if matched:
        with conn.cursor(row_factory=dict_row) as cur:
            for row in cur.execute(LOCK_ATTEMPTS, (sorted(set(matched.values())),)).fetchall():
                destinations.setdefault(row["destination_id"], {
                    "status": row.pop("d_status"), "attempts_made": row.pop("d_attempts"),
                    "outcome": row.pop("d_outcome"), "next_attempt_at": row.pop("d_next"), "changed": False})
                attempts[row["id"]] = row
    return matched, attempts, destinations


def _write_back(conn: psycopg.Connection, attempts: dict[int, dict[str, Any]],
                before: dict[int, tuple[Any, ...]], destinations: dict[int, dict[str, Any]],
                applied: list[tuple[int, int]]) -> None:
    changed = [(aid, *(a[f] for f in ATTEMPT_FIELDS)) for aid, a in attempts.items()
               if tuple(a[f] for f in ATTEMPT_FIELDS) != before[aid]]
    if changed:
        conn.execute(WRITE_ATTEMPTS, _records(("id", *ATTEMPT_FIELDS), changed))
    dests = [(did, d["status"], d["outcome"], d["next_attempt_at"]) for did, d in destinations.items()
             if d["changed"]]
    if dests:
        conn.execute(WRITE_DESTINATIONS, _records(("id", "status", "outcome", "next_attempt_at"), dests))
    if applied:
        conn.execute(MARK_APPLIED, _records(("id", "attempt_id"), applied))


def apply_events(conn: psycopg.Connection, where: str, params: Sequence[Any], limit: int,
                 slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    """Apply up to `limit` unapplied events matching `where`, oldest first, in one transaction."""
    release, renew = slot_ops or _slot_ops()
    report = ApplyReport()
    now = datetime.now(UTC)
    effects = Effects()
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            events = cur.execute(
                f"""SELECT id, kind, batch_id, request_uuid, call_uuid, destination,
                           payload->'parsed' AS parsed FROM call_event WHERE applied_at IS NULL AND ({where})
                    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""", (*params, limit)).fetchall()
        report.seen = len(events)
        report.last_id = max((e["id"] for e in events), default=0)
        if not events:
            return report
        matched, attempts, destinations = _locked_rows(conn, events)
        before = {aid: tuple(a[f] for f in ATTEMPT_FIELDS) for aid, a in attempts.items()}
        policies = CampaignPolicies(conn)
        applied: list[tuple[int, int]] = []
        for event in events:
            attempt = attempts.get(matched.get(event["id"], -1))
            if attempt is None:
                report.unmatched += 1
                continue
            if advance(attempt, destinations[attempt["destination_id"]], event["kind"], event["parsed"] or {},
                       (event["request_uuid"], event["call_uuid"]), now, policies, effects):
                report.finals += 1
            applied.append((event["id"], attempt["id"]))
        _write_back(conn, attempts, before, destinations, applied)
        report.applied = len(applied)
    # After the commit: a slot freed for a call whose end then rolled back would be lent twice.
    _free_and_renew(effects, release, renew)
    return report


def _by_campaign(rows: Iterable[tuple[int, int, T]]) -> dict[tuple[int, int], list[T]]:
    """(account, campaign, item) rows as items per (account, campaign)."""
    grouped: dict[tuple[int, int], list[T]] = {}
    for account_id, campaign_id, item in rows:
        grouped.setdefault((account_id, campaign_id), []).append(item)
    return grouped


def _free_and_renew(effects: Effects, release: SlotRelease, renew: SlotRenew) -> None:
    releases = _by_campaign((a, c, member) for a, c, member in effects.release)
    renewals = _by_campaign((a, c, (member, lease)) for a, c, member, lease in effects.renew)
    try:  # one round trip per campaign for each
        for (account_id, campaign_id), members in releases.items():
            release(account_id, campaign_id, members)
        for (account_id, campaign_id), leases in renewals.items():
            renew(account_id, campaign_id, leases)
    except Exception:  # the slots' own leases free them later; the results are committed
        log.exception("could not free/renew %d slots", len(effects.release) + len(effects.renew))


def apply_pending_events(conn: psycopg.Connection, limit: int = 500, after_id: int = 0,
                         slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    """Apply stored events not yet applied, after a known id."""
    return apply_events(conn, "id > %s", (after_id,), limit, slot_ops)


def apply_events_by_id(conn: psycopg.Connection, ids: Sequence[int],
                       slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    """The results consumer's main step: apply these just-stored events."""
    return apply_events(conn, "id = ANY(%s)", (list(ids),), len(ids), slot_ops)


def apply_events_for_ids(conn: psycopg.Connection, ids: Sequence[str]) -> ApplyReport:
    """Apply events that arrived before the dialer recorded these request/call ids."""
    return apply_events(conn, "request_uuid = ANY(%s) OR call_uuid = ANY(%s)", (list(ids), list(ids)), 1000)
