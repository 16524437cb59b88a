"""A chunk's rows around its requests: the attempts of one-destination requests started together, the
mark before each request with the earlier requests' ids recorded in its commit, the ids of an accepted
request kept for that, and the callbacks that came before the ids they name applied once they are in.

Each of these batches what was one statement per request (docs/DESIGN.md, "Flow"); the order of writes is
unchanged: an attempt is committed before its request leaves, and marked just before it.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from campaigns.call_options import dial_lease_s
from campaigns.states import DestinationStatus
from campaigns.store import attempt_marks as marks
from campaigns.store import dial_store as store
from workers.callbacks.applier import apply_events_for_ids
from workers.dialing.accepted_calls import match_accepted
from workers.dialing.context import ChunkDial
from workers.dialing.spoken_text import store_spoken_text
from workers.providers.calls import CallsAccepted

EARLY_CALLBACKS_CHECK_S = 0.5  # how often a chunk looks for callbacks that came before the ids they name


def start_ahead(chunk: ChunkDial, queued: list[store.QueuedDestination]) -> None:
    """One-destination requests: take the whole chunk's slots in one Redis call and start its attempts in
    one statement (committed, as every attempt is, before its request leaves), rather than one of each per
    request. Without a slot for every one, each request takes its own as it goes."""
    ctx, campaign, creds, limits = chunk.ctx, chunk.campaign, chunk.creds, chunk.limits
    lease_s = dial_lease_s(campaign.provider_options)
    members = [d.slot_member for d in queued]
    if not ctx.budgets.acquire(
        creds.account_id, campaign.id, members, limits.max_concurrent, campaign.max_concurrent, lease_s
    ):
        return
    batches = {d.id: uuid.uuid4() for d in queued}  # each request its own batch, as when started alone
    try:
        started = store.start_attempts(ctx.conn, campaign=campaign, destinations=queued, batch_id=batches,
                                       lease_s=lease_s)
    except Exception:  # no attempt rows (a database error): only their lease would free these slots
        ctx.budgets.release(creds.account_id, campaign.id, members)
        raise
    won = {a.destination.slot_member for a in started}
    if lost := [m for m in members if m not in won]:
        ctx.budgets.release(creds.account_id, campaign.id, lost)
    chunk.spoken.update(store_spoken_text(ctx.conn, campaign, started))
    chunk.ahead.update({a.destination.id: a for a in started})


def undo_ahead(chunk: ChunkDial, rest: list[store.QueuedDestination], not_before: datetime) -> None:
    """The chunk stops early: the attempts it started ahead and never sent go back, with their slots."""
    unsent = [chunk.ahead.pop(d.id) for d in rest if d.id in chunk.ahead]
    if unsent:
        chunk.report.handed_back += store.undo_unsent_attempts(chunk.ctx.conn, unsent, not_before,
                                                               back_to="pending")
        chunk.release(unsent)


def record_unrecorded(chunk: ChunkDial) -> None:
    """Record the ids of the requests sent since the last mark (in one statement), then apply any callback
    that arrived before any id the chunk recorded."""
    if chunk.unrecorded:
        marks.record_sent(chunk.ctx.conn, chunk.unrecorded)
        _recorded(chunk)
    _apply_early_callbacks(chunk, at_end=True)


def _recorded(chunk: ChunkDial) -> None:
    """The pending ids are committed: from now on a callback finds them, and one that came first is left to
    _apply_early_callbacks."""
    if chunk.unrecorded_ids and not chunk.unchecked_ids:
        chunk.unchecked_since = time.monotonic()
    chunk.unchecked_ids += chunk.unrecorded_ids
    chunk.unrecorded, chunk.unrecorded_ids = [], []


def _apply_early_callbacks(chunk: ChunkDial, *, at_end: bool = False) -> None:
    """Apply the callbacks that arrived before the ids they name were recorded: one look for every id
    recorded over EARLY_CALLBACKS_CHECK_S (or when the chunk ends), not one per request. Such a callback
    is stored and acknowledged already; only its moves wait, and early ones are ringing and answer events
    (a hangup comes a call's length later, when its ids have long been recorded)."""
    if not chunk.unchecked_ids:
        return
    if not at_end and time.monotonic() - chunk.unchecked_since < EARLY_CALLBACKS_CHECK_S:
        return
    ids, chunk.unchecked_ids = chunk.unchecked_ids, []
    if store.has_unapplied_events(chunk.ctx.conn, ids):
        apply_events_for_ids(chunk.ctx.conn, ids)


def record_accepted(
    chunk: ChunkDial, started: list[store.StartedAttempt], accepted: CallsAccepted, batch_id: uuid.UUID
) -> None:
    """Store the ids the carrier gave (a bulk answer's request ids, in no order, on its batch for the
    reaper); then apply any callback that arrived before them."""
    conn = chunk.ctx.conn
    match = match_accepted(started, accepted)
    if match.refused:  # no call will come of these: fail them now rather than leave them to the reaper
        store.fail_attempts(
            conn,
            match.refused,
            message="rejected by carrier: invalid destination in bulk",
            destination_status=DestinationStatus.FAILED,
            next_attempt_at=None,
        )
        chunk.release(match.refused)
    if len(started) > 1 and len(accepted.calls) < len(started):
        store.record_batch(conn, batch_id, chunk.creds.account_id, list(accepted.request_uuids))
    # Recorded with the next request's mark or when the chunk ends. Until then the attempt is `dialing`
    # with its sent_at set: a callback that comes first is stored and applied once the ids are in.
    chunk.unrecorded.extend(match.sent)
    chunk.unrecorded_ids.extend(match.provider_ids(accepted))


def mark_and_record(chunk: ChunkDial, started: list[store.StartedAttempt]) -> marks.LastCheck:
    """The last checks and the mark just before a request (campaigns.store.attempt_marks.last_check), with
    the ids of the chunk's earlier requests recorded in the same commit."""
    conn = chunk.ctx.conn
    with conn.pipeline(), conn.transaction():
        if chunk.unrecorded:
            writing = [r[0] for r in chunk.unrecorded] + [a.attempt_id for a in started]
            marks.lock_in_id_order(conn, writing)
            marks.record_sent(conn, chunk.unrecorded)
        check = marks.last_check(conn, chunk.campaign, started, chunk.ctx.now())
    _recorded(chunk)
    _apply_early_callbacks(chunk)
    return check
