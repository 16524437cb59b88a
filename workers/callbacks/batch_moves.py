"""What a batch of carrier events does to the attempts and destinations they matched (pure: no database, no
Redis). The applier's two shells share it: applying stored events (workers.callbacks.applier) and applying
a batch in the transaction that stores it (workers.callbacks.apply_on_store).

Events are taken in order, each through `workers.callbacks.transitions.advance` on the in-memory rows, so
two events of one call in one batch (a ring and its hangup) move it as they would one after the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaigns.call_options import answered_lease_s
from campaigns.states import CampaignState
from campaigns.store.applied_events import ATTEMPT_FIELDS, DestinationMove
from workers.callbacks.transitions import (
    AttemptRow,
    CampaignPolicy,
    CarrierEvent,
    DestinationRow,
    Effects,
    advance,
)


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """An event as a batch needs it: `key` names it in the batch (its id once stored, else its place)."""

    key: int
    kind: str
    request_uuid: str | None
    call_uuid: str | None
    parsed: Mapping[str, Any]


@dataclass
class BatchMoves:
    """The writes a batch decided: attempts as (id, *ATTEMPT_FIELDS) and destinations that changed, each
    applied event with its attempt as (event key, attempt id), and the slots to free or renew once the
    writes are committed."""

    applied: list[tuple[int, int]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    destinations: list[DestinationMove] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)
    unmatched: int = 0
    finals: int = 0


@dataclass
class MatchedRows:
    """A batch's matches (event key -> attempt id) and the matched rows as read under their locks, with
    their campaigns' policies (a campaign missing here, deleted meanwhile, has the default policy)."""

    matched: dict[int, int] = field(default_factory=dict)
    attempts: dict[int, AttemptRow] = field(default_factory=dict)
    destinations: dict[int, DestinationRow] = field(default_factory=dict)
    policies: dict[int, CampaignPolicy] = field(default_factory=dict)


def campaign_policy(retry_policy: dict[str, Any] | None, end_at: datetime | None,
                    provider_options: dict[str, Any] | None, state: str | None) -> CampaignPolicy:
    """A campaign row's retry policy, end, answered-call lease and whether it was cancelled."""
    return CampaignPolicy(retry_policy or {}, end_at, answered_lease_s(provider_options or {}),
                          state == CampaignState.CANCELLED)


def _written(attempt: AttemptRow) -> tuple[Any, ...]:
    return tuple(getattr(attempt, f) for f in ATTEMPT_FIELDS)


def decide_moves(events: Sequence[BatchEvent], locked: MatchedRows, now: datetime) -> BatchMoves:
    """Advance the matched rows by each event in order (changing `locked`'s rows in place) and return what
    to write. An event with no attempt stays unapplied."""
    before = {aid: _written(a) for aid, a in locked.attempts.items()}
    moves = BatchMoves()

    def policy_of(campaign_id: int) -> CampaignPolicy:
        return locked.policies.get(campaign_id) or campaign_policy(None, None, None, None)

    for event in events:
        attempt = locked.attempts.get(locked.matched.get(event.key, -1))
        if attempt is None:
            moves.unmatched += 1
            continue
        carrier_event = CarrierEvent.from_stored(event.kind, event.request_uuid, event.call_uuid,
                                                 event.parsed)
        if advance(attempt, locked.destinations[attempt.destination_id], carrier_event, now, policy_of,
                   moves.effects):
            moves.finals += 1
        moves.applied.append((event.key, attempt.id))
    moves.attempts = [(aid, *after) for aid, a in locked.attempts.items()
                      if (after := _written(a)) != before[aid]]
    moves.destinations = [(did, d.status, d.outcome, d.next_attempt_at)
                          for did, d in locked.destinations.items() if d.changed]
    return moves
