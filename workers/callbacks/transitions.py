"""What one carrier event does to its attempt and destination (pure: no database, no Redis).

`advance` moves the in-memory rows forward only (campaigns.states): a late ring never overwrites a hangup, a
duplicate hangup changes nothing, and a final event may still resolve an attempt the reaper marked `unknown`.
The slots it frees or renews are collected in `Effects`, for the store side to act on after its commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from campaigns.retry_policy import NextStep, after_carrier_throttle, next_step, unless_cancelled
from campaigns.states import (
    FINISHABLE_DESTINATION,
    OPEN_ATTEMPT,
    AttemptStatus,
    DestinationStatus,
    Outcome,
    attempt_can_move,
    slot_member,
)

# Which attempt status an event kind moves to; STATUS events only fill fields.
KIND_TO_ATTEMPT = {"ring": AttemptStatus.RINGING, "answer": AttemptStatus.ANSWERED,
                   "machine": AttemptStatus.ANSWERED, "hangup": AttemptStatus.COMPLETED}
KIND_TO_DESTINATION = {"ring": DestinationStatus.RINGING, "answer": DestinationStatus.ANSWERED,
                       "machine": DestinationStatus.ANSWERED}


@dataclass(slots=True)
class AttemptRow:
    """A call_attempt row as the applier reads and writes it (statuses as stored text)."""

    id: int
    destination_id: int
    campaign_id: int
    account_id: int
    attempt_no: int
    status: str
    request_uuid: str | None = None
    call_uuid: str | None = None
    provider_status: str | None = None
    outcome: str | None = None
    hangup_cause: str | None = None
    ring_at: datetime | None = None
    answer_at: datetime | None = None
    end_at: datetime | None = None
    duration: int | None = None
    billed_duration: int | None = None
    cost: Decimal | None = None

    @property
    def slot_member(self) -> str:
        return slot_member(self.id)


@dataclass(slots=True)
class DestinationRow:
    """The destination fields an event may change; `changed` says whether to write it back."""

    id: int
    status: str
    attempts_made: int
    outcome: str | None = None
    next_attempt_at: datetime | None = None
    changed: bool = False
    attempts_before_run: int = 0  # the retry policy counts this run's attempts only (campaigns.runs)


@dataclass(frozen=True, slots=True)
class CarrierEvent:
    """A stored callback as the transition needs it: its kind, ids and the adapter's parsed fields, as
    stored in payload->'parsed' (times as ISO text and cost as decimal text, converted only where used)."""

    kind: str
    request_uuid: str | None = None
    call_uuid: str | None = None
    provider_status: str | None = None
    outcome: str | None = None  # set on final events
    hangup_cause: str | None = None
    ring_at: str | datetime | None = None
    answer_at: str | datetime | None = None
    end_at: str | datetime | None = None
    duration: int | None = None
    billed_duration: int | None = None
    cost: str | None = None
    throttled: bool = False  # a carrier-side limit hung it up: not the person's answer

    @classmethod
    def from_stored(cls, kind: str, request_uuid: str | None, call_uuid: str | None,
                    parsed: Mapping[str, Any]) -> CarrierEvent:
        get = parsed.get
        return cls(kind, request_uuid, call_uuid, get("provider_status"), get("outcome"), get("hangup_cause"),
                   get("ring_at"), get("answer_at"), get("end_at"), get("duration"), get("billed_duration"),
                   get("cost"), bool(get("throttled")))


@dataclass(frozen=True, slots=True)
class CampaignPolicy:
    """What the applier needs of a campaign: its retry policy, end, and the lease of an answered call."""

    retry_policy: dict[str, Any]
    end_at: datetime | None
    answered_lease_s: float
    cancelled: bool = False  # the campaign was cancelled: nothing goes back to retry_wait


PolicyOf = Callable[[int], CampaignPolicy]  # campaign id -> its policy (looked up only when needed)


@dataclass
class Effects:
    """What applying events asks of the world beyond the rows: slots to free or renew."""

    release: list[tuple[int, int, str]] = field(default_factory=list)        # account, campaign, member
    renew: list[tuple[int, int, str, float]] = field(default_factory=list)   # … and lease seconds


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _remember_machine(attempt: AttemptRow, dest: DestinationRow) -> None:
    """A machine-detection result outlives the hangup that follows it: a Bandwidth disconnect says only
    "hangup" with an answer time. Before the hangup, the attempt's outcome holds it for the hangup to keep;
    after an `answered` hangup (the result arrived late), it corrects the outcome."""
    if attempt.status != AttemptStatus.COMPLETED:
        attempt.outcome = Outcome.MACHINE.value
    elif attempt.outcome == Outcome.ANSWERED:
        attempt.outcome = Outcome.MACHINE.value
        if dest.outcome == Outcome.ANSWERED and dest.attempts_made == attempt.attempt_no:
            dest.outcome, dest.changed = Outcome.MACHINE.value, True


def advance(attempt: AttemptRow, dest: DestinationRow, event: CarrierEvent, now: datetime,
            policy_of: PolicyOf, effects: Effects) -> bool:
    """Apply one event to the in-memory attempt and destination rows (pure apart from `effects`).
    Returns True if it ended the attempt."""
    attempt.request_uuid = attempt.request_uuid or event.request_uuid
    attempt.call_uuid = attempt.call_uuid or event.call_uuid
    attempt.ring_at = attempt.ring_at or _time(event.ring_at)
    attempt.answer_at = attempt.answer_at or _time(event.answer_at)
    provider_status = event.provider_status
    target = KIND_TO_ATTEMPT.get(event.kind)
    current = attempt.status
    if target is None:  # a status update: its word counts only while the call is open
        if current in OPEN_ATTEMPT and provider_status:
            attempt.provider_status = provider_status
        return False
    if event.kind == "machine":
        _remember_machine(attempt, dest)
    if not attempt_can_move(AttemptStatus(current), target):
        return False  # a duplicate, or late: nothing else changes
    attempt.status = target.value
    attempt.provider_status = provider_status or attempt.provider_status
    ours = dest.attempts_made == attempt.attempt_no  # a later attempt owns the destination now
    if target != AttemptStatus.COMPLETED:
        _progress(attempt, dest, event.kind, ours, policy_of, effects)
        return False
    outcome = Outcome(event.outcome or Outcome.UNKNOWN)
    if outcome == Outcome.ANSWERED and attempt.outcome == Outcome.MACHINE:
        outcome = Outcome.MACHINE  # a machine result came first (Bandwidth: its own callback)
    cost = Decimal(event.cost) if event.cost else None
    attempt.outcome = outcome.value
    attempt.hangup_cause = event.hangup_cause
    attempt.end_at = _time(event.end_at) or attempt.end_at or now
    attempt.duration = event.duration
    attempt.billed_duration = event.billed_duration
    attempt.cost = cost
    if current != AttemptStatus.UNKNOWN:  # the reaper already freed unknown ones
        effects.release.append((attempt.account_id, attempt.campaign_id, attempt.slot_member))
    if ours and dest.status in FINISHABLE_DESTINATION:
        policy = policy_of(attempt.campaign_id)
        tries_this_run = attempt.attempt_no - dest.attempts_before_run
        step: NextStep
        if event.throttled:
            step = after_carrier_throttle(tries_this_run, now)
        else:
            step = next_step(outcome, tries_this_run, policy.retry_policy, now, policy.end_at)
        step = unless_cancelled(step, policy.cancelled)
        dest.status, dest.outcome = step.status.value, step.outcome.value
        dest.next_attempt_at, dest.changed = step.next_attempt_at, True
    return True


def _progress(attempt: AttemptRow, dest: DestinationRow, kind: str, ours: bool, policy_of: PolicyOf,
              effects: Effects) -> None:
    """A ring or an answer: the destination follows if this attempt is its latest and it is behind."""
    dest_target = KIND_TO_DESTINATION[kind]
    behind = dest.status == "dialing" or (dest.status == "ringing" and dest_target != "ringing")
    if ours and behind:
        dest.status = dest_target.value
        dest.changed = True
        if kind in ("answer", "machine"):
            lease = policy_of(attempt.campaign_id).answered_lease_s
            effects.renew.append((attempt.account_id, attempt.campaign_id, attempt.slot_member, lease))
