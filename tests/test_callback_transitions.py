"""What a carrier event does to its attempt and destination (pure): duplicated, late, reordered, early and
after-`unknown` events, one table row each, without a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from campaigns.states import Outcome
from workers.callbacks.event_payload import parsed_fields
from workers.callbacks.transitions import (
    AttemptRow,
    CampaignPolicy,
    CarrierEvent,
    DestinationRow,
    Effects,
    advance,
)
from workers.providers.calls import CallbackEvent, EventKind

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = CampaignPolicy(retry_policy={}, end_at=None, answered_lease_s=3700.0)

RING = CarrierEvent.from_stored("ring", "req-1", None,
                    {"provider_status": "ringing", "ring_at": "2026-03-02T11:59:50+00:00"})
ANSWER = CarrierEvent.from_stored("answer", "req-1", "call-1", {"provider_status": "in-progress"})
HANGUP = CarrierEvent.from_stored("hangup", "req-1", "call-1", {
    "provider_status": "completed", "outcome": "answered", "hangup_cause": "NORMAL_CLEARING", "duration": 31,
    "billed_duration": 60, "cost": "0.0120", "end_at": "2026-03-02T12:00:00+00:00"})
BUSY = CarrierEvent.from_stored("hangup", "req-1", "call-1", {"outcome": "busy", "hangup_cause": "USER_BUSY"})
STATUS = CarrierEvent.from_stored("status", "req-1", None, {"provider_status": "queued"})


@dataclass
class Row:
    """One case: the rows before, the events in arrival order, and what must hold after."""

    attempt_status: str
    dest_status: str
    events: list[CarrierEvent]
    attempt_after: str
    dest_after: str
    finals: int
    released: int
    renewed: int = 0
    attempts_made: int = 1
    extra: dict[str, object] = field(default_factory=dict)


CASES = {
    "in order: ring, answer, hangup":
        Row("sent", "dialing", [RING, ANSWER, HANGUP], "completed", "done", 1, 1, 1),
    "duplicated hangup changes nothing more":
        Row("sent", "dialing", [HANGUP, HANGUP], "completed", "done", 1, 1),
    "duplicated ring":
        Row("sent", "dialing", [RING, RING], "ringing", "ringing", 0, 0),
    "late ring after the hangup":
        Row("sent", "dialing", [HANGUP, RING], "completed", "done", 1, 1),
    "reordered: answer before ring":
        Row("sent", "dialing", [ANSWER, RING], "answered", "answered", 0, 0, 1),
    "early: hangup before the dial answer recorded ids":
        Row("dialing", "dialing", [HANGUP], "completed", "done", 1, 1),
    "after unknown: a late hangup resolves it, slot already freed":
        Row("unknown", "unknown", [HANGUP], "completed", "done", 1, 0),
    "after unknown: a late ring is refused":
        Row("unknown", "unknown", [RING, ANSWER], "unknown", "unknown", 0, 0),
    "status update while open only fills the word":
        Row("sent", "dialing", [STATUS], "sent", "dialing", 0, 0,
            extra={"provider_status": "queued"}),
    "status update after the end is ignored":
        Row("completed", "done", [STATUS], "completed", "done", 0, 0,
            extra={"provider_status": None}),
    "busy: the destination waits for a retry":
        Row("ringing", "ringing", [BUSY], "completed", "retry_wait", 1, 1),
    "an older attempt's hangup leaves the newer attempt's destination alone":
        Row("sent", "dialing", [HANGUP], "completed", "dialing", 1, 1, attempts_made=2),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_events_only_move_attempts_and_destinations_forward(case: Row) -> None:
    attempt = AttemptRow(id=1, destination_id=10, campaign_id=5, account_id=7, attempt_no=1,
                         status=case.attempt_status)
    dest = DestinationRow(id=10, status=case.dest_status, attempts_made=case.attempts_made)
    effects = Effects()
    asked: list[int] = []

    def policy_of(campaign_id: int) -> CampaignPolicy:
        asked.append(campaign_id)
        return POLICY

    finals = sum(advance(attempt, dest, event, NOW, policy_of, effects) for event in case.events)
    assert (attempt.status, dest.status, finals) == (case.attempt_after, case.dest_after, case.finals)
    assert effects.release == [(7, 5, "1")] * case.released, "the slot is the attempt's own (its id)"
    assert effects.renew == [(7, 5, "1", 3700.0)] * case.renewed
    assert dest.changed == (case.dest_after != case.dest_status)
    for name, value in case.extra.items():
        assert getattr(attempt, name) == value


def test_a_final_event_records_the_call_and_schedules_the_policy() -> None:
    attempt = AttemptRow(id=1, destination_id=10, campaign_id=5, account_id=7, attempt_no=1, status="sent")
    dest = DestinationRow(id=10, status="dialing", attempts_made=1)
    assert advance(attempt, dest, BUSY, NOW, lambda _: POLICY, Effects())
    assert (attempt.outcome, attempt.hangup_cause, attempt.end_at) == ("busy", "USER_BUSY", NOW)
    assert (dest.outcome, dest.next_attempt_at) == ("busy", NOW + timedelta(seconds=300))
    assert attempt.request_uuid == "req-1" and attempt.call_uuid == "call-1"


def test_a_carrier_throttled_hangup_retries_soon_whatever_the_policy() -> None:
    attempt = AttemptRow(id=1, destination_id=10, campaign_id=5, account_id=7, attempt_no=1, status="sent")
    dest = DestinationRow(id=10, status="dialing", attempts_made=1)
    throttled = CarrierEvent.from_stored("hangup", "req-1", None, {"outcome": "failed", "throttled": True})
    advance(attempt, dest, throttled, NOW, lambda _: POLICY, Effects())
    assert (dest.status, dest.next_attempt_at) == ("retry_wait", NOW + timedelta(seconds=5))


def test_the_first_ids_and_times_stick() -> None:
    attempt = AttemptRow(id=1, destination_id=10, campaign_id=5, account_id=7, attempt_no=1, status="sent",
                         request_uuid="mine")
    dest = DestinationRow(id=10, status="dialing", attempts_made=1)
    advance(attempt, dest, RING, NOW, lambda _: POLICY, Effects())
    later = CarrierEvent("ring", "other", None, ring_at="2026-03-02T11:59:59+00:00")
    advance(attempt, dest, later, NOW, lambda _: POLICY, Effects())
    assert attempt.request_uuid == "mine"
    assert attempt.ring_at == datetime(2026, 3, 2, 11, 59, 50, tzinfo=UTC)


def test_a_stored_event_is_read_back_with_every_field_the_transition_uses() -> None:
    received = CallbackEvent(
        provider="plivo", kind=EventKind.HANGUP, event_key="k", request_uuid="req-1", call_uuid="call-1",
        destination="+14155550100", provider_status="completed", is_final=True, outcome=Outcome.BUSY,
        throttled=True, hangup_cause="USER_BUSY", ring_at=NOW, answer_at=NOW, end_at=NOW, duration=3,
        billed_duration=60, cost=Decimal("0.012"))
    stored = orjson.loads(orjson.dumps(parsed_fields(received)))  # as payload->'parsed' comes back
    event = CarrierEvent.from_stored("hangup", "req-1", "call-1", stored)
    assert (event.outcome, event.hangup_cause, event.provider_status, event.throttled) == (
        "busy", "USER_BUSY", "completed", True)
    assert (event.duration, event.billed_duration, event.cost) == (3, 60, "0.012")
    assert event.ring_at == event.answer_at == event.end_at == NOW.isoformat()


# A machine-detection result in its own callback (Bandwidth's machineDetectionComplete) is not lost to the
# disconnect that follows, which says only "hangup" with an answer time; in either order.
MACHINE = CarrierEvent.from_stored("machine", "req-1", "call-1",
                                   {"provider_status": "answering-machine", "outcome": "machine"})


def _fresh() -> tuple[AttemptRow, DestinationRow]:
    return (AttemptRow(id=1, destination_id=10, campaign_id=5, account_id=7, attempt_no=1, status="sent"),
            DestinationRow(id=10, status="dialing", attempts_made=1))


def test_a_machine_result_before_the_disconnect_is_the_outcome() -> None:
    attempt, dest = _fresh()
    for event in (ANSWER, MACHINE, HANGUP):
        advance(attempt, dest, event, NOW, lambda _: POLICY, Effects())
    assert (attempt.status, attempt.outcome, dest.outcome) == ("completed", "machine", "machine")


def test_a_machine_result_after_the_disconnect_corrects_an_answered_outcome() -> None:
    attempt, dest = _fresh()
    advance(attempt, dest, HANGUP, NOW, lambda _: POLICY, Effects())
    assert (attempt.outcome, dest.outcome) == ("answered", "answered")
    advance(attempt, dest, MACHINE, NOW, lambda _: POLICY, Effects())
    assert (attempt.status, attempt.outcome, dest.outcome, dest.changed) == (
        "completed", "machine", "machine", True)


def test_a_human_answer_stays_answered() -> None:
    attempt, dest = _fresh()
    for event in (ANSWER, CarrierEvent("status", provider_status="human"), HANGUP):
        advance(attempt, dest, event, NOW, lambda _: POLICY, Effects())
    assert (attempt.outcome, dest.outcome) == ("answered", "answered")
