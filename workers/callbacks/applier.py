"""The applier: apply stored carrier events (call_event rows) to attempts and destinations, deciding each
move; campaigns.store.applied_events writes them.

Each event is applied once (applied_at), under row locks, in id order; what an event does to its rows is
`workers.callbacks.transitions.advance` (pure). An event whose attempt cannot be found yet (its ids not
recorded) stays unapplied and is tried again when the ids are recorded, or by a sweep.

A batch costs a fixed handful of statements whatever its size: select the events, match them to attempts
in one query, lock those attempts and destinations, compute every transition in memory, write attempts,
destinations and events back with one UPDATE each (campaigns.store.applied_events), then free the ended
calls' slots. Which events a batch takes is named by a selector (`pending_after`, `by_ids`,
`by_provider_ids`, ...), not by SQL text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from campaigns.call_options import answered_lease_s
from campaigns.states import CampaignState
from campaigns.store.applied_events import ATTEMPT_FIELDS, json_records, set_event_aside, write_applied
from workers.callbacks.transitions import (
    AttemptRow,
    CampaignPolicy,
    CarrierEvent,
    DestinationRow,
    Effects,
    advance,
)
from workers.ratelimit.process_budgets import get_budgets

log = logging.getLogger(__name__)

T = TypeVar("T")

SlotRelease = Callable[[int, int, list[str]], None]  # (account_id, campaign_id, members)
SlotRenew = Callable[[int, int, list[tuple[str, float]]], None]  # (account, campaign, [(member, lease)])


@dataclass
class ApplyReport:
    applied: int = 0
    unmatched: int = 0
    finals: int = 0
    seen: int = 0      # events looked at (applied or not)
    last_id: int = 0   # highest event id looked at


def _e164(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("sip:") or value.startswith("+"):
        return value
    return "+" + value if value.isdigit() else value


class CampaignPolicies:
    """Retry policy, end and answered-call lease of each campaign, read once per batch, when first needed."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.cache: dict[int, CampaignPolicy] = {}

    def __call__(self, campaign_id: int) -> CampaignPolicy:
        if campaign_id not in self.cache:
            row = self.conn.execute(
                "SELECT retry_policy, end_at, provider_options, state FROM campaign WHERE id = %s",
                (campaign_id,)).fetchone()
            lease = answered_lease_s((row[2] if row else None) or {})
            cancelled = row is not None and row[3] == CampaignState.CANCELLED
            self.cache[campaign_id] = CampaignPolicy(row[0] or {}, row[1], lease, cancelled) \
                if row else CampaignPolicy({}, None, lease)
        return self.cache[campaign_id]


def _slot_ops() -> tuple[SlotRelease, SlotRenew]:
    budgets = get_budgets()

    def release(account_id: int, campaign_id: int, members: list[str]) -> None:
        budgets.release(account_id, campaign_id, members, call_ended=True)  # a line freed: refill it now

    def renew(account_id: int, campaign_id: int, leases: list[tuple[str, float]]) -> None:
        budgets.renew_many(account_id, campaign_id, [(m, lease) for m, lease in leases if lease > 0])

    return release, renew


# The attempt of each event, only among the attempts of the account that authenticated the event (another
# account's credentials must not reach this one's calls): by (batch, destination) first, then a request_uuid
# (shared by a bulk request: pick by destination), then a call_uuid. One query for the whole batch. The
# (batch, destination) match goes through the batch's campaign and the unique (campaign, number) index: two
# index lookups per event, where joining a bulk batch's thousand attempts to their numbers cost a thousand
# per event. (The batch is a FILTER, not a join condition, so the planner cannot pick the batch index and
# read the whole batch.)
MATCH_ATTEMPTS = """
WITH ev AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%s::jsonb)
            AS r(id bigint, account_id bigint, batch_id uuid, dest text, request_uuid text, call_uuid text)),
batch_campaign AS MATERIALIZED (
    SELECT b.batch_id, b.account_id,
           (SELECT a.campaign_id FROM call_attempt a WHERE a.batch_id = b.batch_id
               AND a.account_id = b.account_id LIMIT 1) AS campaign_id
      FROM (SELECT DISTINCT batch_id, account_id FROM ev WHERE batch_id IS NOT NULL AND dest IS NOT NULL) b)
SELECT ev.id, coalesce(
    (SELECT min(a.id) FILTER (WHERE a.batch_id = ev.batch_id) FROM batch_campaign bc
       JOIN destination d ON d.campaign_id = bc.campaign_id AND d.number = ev.dest
       JOIN call_attempt a ON a.destination_id = d.id
      WHERE bc.batch_id = ev.batch_id AND bc.account_id = ev.account_id),
    (SELECT CASE WHEN count(*) = 1 THEN min(a.id) ELSE min(a.id) FILTER (WHERE d.number = ev.dest) END
       FROM call_attempt a JOIN destination d ON d.id = a.destination_id
      WHERE ev.request_uuid IS NOT NULL AND a.request_uuid = ev.request_uuid
        AND a.account_id = ev.account_id),
    (SELECT CASE WHEN count(*) = 1 THEN min(a.id) ELSE min(a.id) FILTER (WHERE d.number = ev.dest) END
       FROM call_attempt a JOIN destination d ON d.id = a.destination_id
      WHERE ev.call_uuid IS NOT NULL AND a.call_uuid = ev.call_uuid AND a.account_id = ev.account_id))
FROM ev
"""

LOCK_ATTEMPTS = """
SELECT a.id, a.destination_id, a.campaign_id, a.account_id, a.attempt_no, a.status, a.request_uuid,
       a.call_uuid, a.provider_status, a.outcome, a.hangup_cause, a.ring_at, a.answer_at, a.end_at,
       a.duration, a.billed_duration, a.cost, d.status AS d_status, d.attempts_made AS d_attempts,
       d.outcome AS d_outcome, d.next_attempt_at AS d_next, d.attempts_before_run AS d_before_run
FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.id = ANY(%s) ORDER BY a.id FOR UPDATE OF a, d
"""


def _locked_rows(conn: psycopg.Connection, events: list[dict[str, Any]]
                 ) -> tuple[dict[int, int], dict[int, AttemptRow], dict[int, DestinationRow]]:
    """(event id -> attempt id, attempts by id, destinations by id), attempts and destinations locked."""
    keys = json_records(("id", "account_id", "batch_id", "dest", "request_uuid", "call_uuid"),
                    [(e["id"], e["account_id"], e["batch_id"], _e164(e["destination"]), e["request_uuid"],
                      e["call_uuid"]) for e in events])
    matched = {eid: aid for eid, aid in conn.execute(MATCH_ATTEMPTS, keys).fetchall() if aid is not None}
    attempts: dict[int, AttemptRow] = {}
    destinations: dict[int, DestinationRow] = {}
    if matched:
        with conn.cursor(row_factory=dict_row) as cur:
            for row in cur.execute(LOCK_ATTEMPTS, (sorted(set(matched.values())),)).fetchall():
                dest = DestinationRow(row["destination_id"], row.pop("d_status"), row.pop("d_attempts"),
                                      row.pop("d_outcome"), row.pop("d_next"),
                                      attempts_before_run=row.pop("d_before_run"))
                destinations.setdefault(dest.id, dest)
                attempts[row["id"]] = AttemptRow(**row)
    return matched, attempts, destinations


def _written(attempt: AttemptRow) -> tuple[Any, ...]:
    return tuple(getattr(attempt, f) for f in ATTEMPT_FIELDS)


def _write_back(conn: psycopg.Connection, attempts: dict[int, AttemptRow],
                before: dict[int, tuple[Any, ...]], destinations: dict[int, DestinationRow],
                applied: list[tuple[int, int]]) -> None:
    changed = [(aid, *now) for aid, a in attempts.items() if (now := _written(a)) != before[aid]]
    dests = [(did, d.status, d.outcome, d.next_attempt_at) for did, d in destinations.items() if d.changed]
    write_applied(conn, attempts=changed, destinations=dests, applied=applied)


@dataclass(frozen=True)
class EventSelector:
    """Which unapplied events a batch takes: built only by the functions below, so no caller writes SQL."""

    where: str
    params: tuple[Any, ...]


def pending_after(after_id: int) -> EventSelector:
    """Every unapplied event after a known id."""
    return EventSelector("id > %s", (after_id,))


def by_ids(ids: Sequence[int]) -> EventSelector:
    """These just-stored events."""
    return EventSelector("id = ANY(%s)", (list(ids),))


def by_provider_ids(ids: Sequence[str]) -> EventSelector:
    """Events carrying any of these request or call ids."""
    return EventSelector("request_uuid = ANY(%s) OR call_uuid = ANY(%s)", (list(ids), list(ids)))


def unattached_for_call(request_uuid: str | None, call_uuid: str | None) -> EventSelector:
    """Events of one call not yet tied to an attempt (the reaper's reconciled status)."""
    return EventSelector("attempt_id IS NULL AND (request_uuid = %s OR call_uuid = %s)",
                         (request_uuid, call_uuid))


def unattached_of_batch(batch_id: Any) -> EventSelector:
    """Events of one batch not yet tied to an attempt (the reaper's look-up of a bulk's request ids)."""
    return EventSelector("attempt_id IS NULL AND batch_id = %s", (batch_id,))


def for_batches(batch_ids: Sequence[Any]) -> EventSelector:
    """Events of these requests (by the batch id in our callback URLs), before their sends are judged."""
    return EventSelector("batch_id = ANY(%s)", (list(batch_ids),))


def recent_after(after_id: int) -> EventSelector:
    """The API applier's sweep: older than a second (the fast path has them), younger than an hour (the
    reaper resolves their attempts by then), after a cursor."""
    return EventSelector("received_at > now() - interval '1 hour' AND received_at < now() - interval "
                         "'1 second' AND id > %s", (after_id,))


def left_over_after(after_id: int) -> EventSelector:
    """The Celery safety net: events the API left for over 10 s, after a cursor."""
    return EventSelector("received_at < now() - interval '10 seconds' AND id > %s", (after_id,))


# What a poison event (a value Postgres or the transition maths cannot take) raises while being applied; a
# lost connection is not one of them: that batch waits for the next try.
POISON_ERRORS = (psycopg.DataError, ValueError, TypeError, KeyError, ArithmeticError)


def apply_events(conn: psycopg.Connection, selector: EventSelector, limit: int,
                 slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    """Apply up to `limit` unapplied events the selector picks, oldest first, in one transaction. If the
    batch fails on an event's values, its events are applied one by one and the poison ones set aside
    (applied_at with a rejected_reason), so that one event never blocks the others or stalls the applier."""
    try:
        return _apply_batch(conn, selector, limit, slot_ops)
    except POISON_ERRORS as exc:
        log.warning("a batch of events failed (%s); applying them one by one", exc)
    ids = [row[0] for row in conn.execute(
        f"SELECT id FROM call_event WHERE applied_at IS NULL AND ({selector.where}) ORDER BY id LIMIT %s",
        (*selector.params, limit)).fetchall()]
    report = ApplyReport(seen=len(ids), last_id=max(ids, default=0))
    for event_id in ids:
        try:
            one = _apply_batch(conn, by_ids([event_id]), 1, slot_ops)
        except POISON_ERRORS as exc:
            log.error("event %s cannot be applied and is set aside: %s", event_id, exc)
            with conn.transaction():
                set_event_aside(conn, event_id=event_id, reason=f"{type(exc).__name__}: {exc}"[:500])
            continue
        report.applied += one.applied
        report.unmatched += one.unmatched
        report.finals += one.finals
    return report


def _apply_batch(conn: psycopg.Connection, selector: EventSelector, limit: int,
                 slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    release, renew = slot_ops or _slot_ops()
    report = ApplyReport()
    now = datetime.now(UTC)
    effects = Effects()
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            events = cur.execute(
                f"""SELECT id, account_id, kind, batch_id, request_uuid, call_uuid, destination,
                           payload->'parsed' AS parsed FROM call_event
                    WHERE applied_at IS NULL AND ({selector.where})
                    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""", (*selector.params, limit)).fetchall()
        report.seen = len(events)
        report.last_id = max((e["id"] for e in events), default=0)
        if not events:
            return report
        matched, attempts, destinations = _locked_rows(conn, events)
        before = {aid: _written(a) for aid, a in attempts.items()}
        policies = CampaignPolicies(conn)
        applied: list[tuple[int, int]] = []
        for event in events:
            attempt = attempts.get(matched.get(event["id"], -1))
            if attempt is None:
                report.unmatched += 1
                continue
            carrier_event = CarrierEvent.from_stored(event["kind"], event["request_uuid"], event["call_uuid"],
                                                     event["parsed"] or {})
            if advance(attempt, destinations[attempt.destination_id], carrier_event, now, policies, effects):
                report.finals += 1
            applied.append((event["id"], attempt.id))
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
    return apply_events(conn, pending_after(after_id), limit, slot_ops)


def apply_events_by_id(conn: psycopg.Connection, ids: Sequence[int],
                       slot_ops: tuple[SlotRelease, SlotRenew] | None = None) -> ApplyReport:
    """The results consumer's main step: apply these just-stored events."""
    return apply_events(conn, by_ids(ids), len(ids), slot_ops)


def apply_events_for_ids(conn: psycopg.Connection, ids: Sequence[str]) -> ApplyReport:
    """Apply events that arrived before the dialer recorded these request/call ids."""
    return apply_events(conn, by_provider_ids(ids), 1000)
