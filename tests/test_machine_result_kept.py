"""A machine-detection result that arrives in its own callback (Bandwidth's machineDetectionComplete) is not
lost to the disconnect that follows, which says only "hangup" with an answer time; in either order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workers.results import Effects, advance

NOW = datetime(2026, 4, 9, 10, 30, tzinfo=UTC)


def _rows() -> tuple[dict[str, Any], dict[str, Any]]:
    attempt = {"id": 1, "destination_id": 7, "campaign_id": 3, "account_id": 2, "attempt_no": 1,
               "status": "sent", "request_uuid": "c-1", "call_uuid": "c-1", "provider_status": None,
               "outcome": None, "hangup_cause": None, "ring_at": None, "answer_at": None, "end_at": None,
               "duration": None, "billed_duration": None, "cost": None}
    dest = {"status": "dialing", "outcome": None, "attempts_made": 1, "next_attempt_at": None}
    return attempt, dest


def _policy(_: int) -> tuple[dict[str, Any], datetime | None, float]:
    return {}, None, 120.0


def _apply(attempt: dict[str, Any], dest: dict[str, Any], kind: str, parsed: dict[str, Any]) -> bool:
    return advance(attempt, dest, kind, parsed, ("c-1", "c-1"), NOW, _policy, Effects())


MACHINE = {"provider_status": "answering-machine", "outcome": "machine"}
DISCONNECT = {"provider_status": "hangup", "outcome": "answered", "answer_at": "2026-04-09T10:29:50+00:00"}


def test_a_machine_result_before_the_disconnect_is_the_outcome() -> None:
    attempt, dest = _rows()
    assert not _apply(attempt, dest, "answer", {"provider_status": "answer"})
    assert not _apply(attempt, dest, "machine", MACHINE)
    assert _apply(attempt, dest, "hangup", DISCONNECT)
    assert (attempt["status"], attempt["outcome"], dest["outcome"]) == ("completed", "machine", "machine")


def test_a_machine_result_after_the_disconnect_corrects_an_answered_outcome() -> None:
    attempt, dest = _rows()
    assert _apply(attempt, dest, "hangup", DISCONNECT)
    assert (attempt["outcome"], dest["outcome"]) == ("answered", "answered")
    _apply(attempt, dest, "machine", MACHINE)
    assert (attempt["status"], attempt["outcome"], dest["outcome"]) == ("completed", "machine", "machine")


def test_a_human_answer_stays_answered() -> None:
    attempt, dest = _rows()
    _apply(attempt, dest, "status", {"provider_status": "human"})
    assert _apply(attempt, dest, "hangup", DISCONNECT)
    assert (attempt["outcome"], dest["outcome"]) == ("answered", "answered")
