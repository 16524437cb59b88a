"""A machine-detection result that arrives in its own callback (Bandwidth's machineDetectionComplete) is not
lost to the disconnect that follows, which says only "hangup" with an answer time; in either order."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.callbacks.transitions import (
    AttemptRow,
    CampaignPolicy,
    CarrierEvent,
    DestinationRow,
    Effects,
    advance,
)

NOW = datetime(2026, 4, 9, 10, 30, tzinfo=UTC)
MACHINE = CarrierEvent("machine", "c-1", "c-1", provider_status="answering-machine", outcome="machine")
DISCONNECT = CarrierEvent("hangup", "c-1", "c-1", provider_status="hangup", outcome="answered",
                          answer_at="2026-04-09T10:29:50+00:00")


def _rows() -> tuple[AttemptRow, DestinationRow]:
    attempt = AttemptRow(id=1, destination_id=7, campaign_id=3, account_id=2, attempt_no=1, status="sent",
                         request_uuid="c-1", call_uuid="c-1")
    return attempt, DestinationRow(id=7, status="dialing", attempts_made=1)


def _policy(_: int) -> CampaignPolicy:
    return CampaignPolicy(retry_policy={}, end_at=None, answered_lease_s=120.0)


def _apply(attempt: AttemptRow, dest: DestinationRow, event: CarrierEvent) -> bool:
    return advance(attempt, dest, event, NOW, _policy, Effects())


def test_a_machine_result_before_the_disconnect_is_the_outcome() -> None:
    attempt, dest = _rows()
    assert not _apply(attempt, dest, CarrierEvent("answer", provider_status="answer"))
    assert not _apply(attempt, dest, MACHINE)
    assert _apply(attempt, dest, DISCONNECT)
    assert (attempt.status, attempt.outcome, dest.outcome) == ("completed", "machine", "machine")


def test_a_machine_result_after_the_disconnect_corrects_an_answered_outcome() -> None:
    attempt, dest = _rows()
    assert _apply(attempt, dest, DISCONNECT)
    assert (attempt.outcome, dest.outcome) == ("answered", "answered")
    _apply(attempt, dest, MACHINE)
    assert (attempt.status, attempt.outcome, dest.outcome, dest.changed) == (
        "completed", "machine", "machine", True)


def test_a_human_answer_stays_answered() -> None:
    attempt, dest = _rows()
    _apply(attempt, dest, CarrierEvent("status", provider_status="human"))
    assert _apply(attempt, dest, DISCONNECT)
    assert (attempt.outcome, dest.outcome) == ("answered", "answered")
