"""The applier: apply stored carrier events (call_event rows) to attempts and destinations, deciding each
move; campaigns.store.applied_events writes them.

Most callbacks never come here: the API applies each batch in the transaction that stores it
(workers.callbacks.apply_on_store). This applies what that left: events stored before their attempt's ids
were recorded, a batch whose apply failed there, and every other caller's events (the reaper's answers,
the dial path once it records ids, the sweeps).

Each event is applied once (applied_at), under row locks, in id order; what a batch does to its rows is
`workers.callbacks.batch_moves.decide_moves` (pure). An event whose attempt cannot be found yet (its ids
not recorded) stays unapplied and is tried again when the ids are recorded, or by a sweep.

A batch costs a fixed handful of statements whatever its size: select the events, match them to attempts
and lock those (workers.callbacks.attempt_match, one statement), read their campaigns' policies, compute
every transition in memory, write attempts, destinations and events back with one UPDATE each, then free
the ended calls' slots. Which events a batch takes is named by a selector (`pending_after`, `by_ids`,
`by_provider_ids`, ...), not by SQL text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.store.applied_events import set_event_aside, write_applied
from workers.callbacks.attempt_match import MatchKey, lock_matched
from workers.callbacks.batch_moves import BatchEvent, BatchMoves, decide_moves
from workers.callbacks.transitions import Effects
from workers.ratelimit.process_budgets import get_budgets
from workers.ratelimit.slots import by_budget

log = logging.getLogger(__name__)


SlotRelease = Callable[[int, int, list[str]], None]  # (account_id, campaign_id, members)
SlotRenew = Callable[[int, int, list[tuple[str, float]]], None]  # (account, campaign, [(member, lease)])


@dataclass
class ApplyReport:
    applied: int = 0
    unmatched: int = 0
    finals: int = 0
    seen: int = 0      # events looked at (applied or not)
    last_id: int = 0   # highest event id looked at


def _slot_ops() -> tuple[SlotRelease, SlotRenew]:
    budgets = get_budgets()

    def release(account_id: int, campaign_id: int, members: list[str]) -> None:
        budgets.release(account_id, campaign_id, members, call_ended=True)  # a line freed: refill it now

    def renew(account_id: int, campaign_id: int, leases: list[tuple[str, float]]) -> None:
        budgets.renew_many(account_id, campaign_id, [(m, lease) for m, lease in leases if lease > 0])

    return release, renew


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
    moves = BatchMoves()
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
        locked = lock_matched(conn, [MatchKey(e["id"], e["account_id"], e["batch_id"], e["destination"],
                                              e["request_uuid"], e["call_uuid"]) for e in events])
        batch = [BatchEvent(e["id"], e["kind"], e["request_uuid"], e["call_uuid"], e["parsed"] or {})
                 for e in events]
        moves = decide_moves(batch, locked, now)
        write_applied(conn, attempts=moves.attempts, destinations=moves.destinations, applied=moves.applied)
        report.applied, report.unmatched, report.finals = len(moves.applied), moves.unmatched, moves.finals
    # After the commit: a slot freed for a call whose end then rolled back would be lent twice.
    free_and_renew(moves.effects, release, renew)
    return report



def free_and_renew(effects: Effects, release: SlotRelease | None = None,
                   renew: SlotRenew | None = None) -> None:
    """Free the slots of the calls that ended and renew those answered (after the commit that ended them);
    the process's own budgets unless given."""
    if release is None or renew is None:
        release, renew = _slot_ops()
    releases = by_budget((a, c, member) for a, c, member in effects.release)
    renewals = by_budget((a, c, (member, lease)) for a, c, member, lease in effects.renew)
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
