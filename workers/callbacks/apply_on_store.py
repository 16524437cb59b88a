"""The applier inside the event store's group commit: the moves of a batch of new callbacks, decided under
row locks in the transaction that stores them (campaigns.store.event_store.EventWriter writes both and
commits once). So a callback is applied when it is acknowledged, with no second transaction, no
`call_event` row written twice and no poll between storing and applying.

Events whose attempt cannot be found yet (their ids not recorded) are stored unapplied, as before, for the
dial path's `apply_events_for_ids` or the sweeps (workers.callbacks.applier).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

import psycopg

from campaigns.store.event_store import EventRow, StoreMoves
from workers.callbacks.applier import free_and_renew
from workers.callbacks.attempt_match import MatchKey, lock_matched
from workers.callbacks.batch_moves import BatchEvent, decide_moves


def apply_on_store(conn: psycopg.Connection, rows: Sequence[EventRow]) -> StoreMoves:
    """What these events do (in the caller's transaction): each row's attempt by its place in `rows`, the
    attempts and destinations to write, and the slots to free or renew once committed."""
    now = datetime.now(UTC)
    locked = lock_matched(conn, [MatchKey(i, r.account_id, r.batch_id, r.destination, r.request_uuid,
                                          r.call_uuid) for i, r in enumerate(rows)])
    events = [BatchEvent(i, r.kind, r.request_uuid, r.call_uuid, r.payload.get("parsed") or {})
              for i, r in enumerate(rows)]
    moves = decide_moves(events, locked, now)
    slots = moves.effects.release or moves.effects.renew
    return StoreMoves(attempt_of=dict(moves.applied), attempts=moves.attempts,
                      destinations=moves.destinations,
                      after_commit=partial(free_and_renew, moves.effects) if slots else None)
