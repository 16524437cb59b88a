"""Every row of the PROVIDERS.md outcome table, per provider, plus the shared value coercions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from campaigns.states import Outcome
from workers.providers.outcomes import (
    bandwidth_outcome,
    event_key,
    parse_decimal,
    parse_int,
    parse_time,
    plivo_outcome,
    require,
    seconds_between,
    tryvox_outcome,
    voipbin_outcome,
)

Out = Outcome


@pytest.mark.parametrize(("status", "code", "duration", "answer_time", "machine", "outcome", "throttled"), [
    ("completed", 4000, 12, "2024-05-01 10:00:05", None, Out.ANSWERED, False),
    ("completed", 4010, 0, "2024-05-01 10:00:05", None, Out.ANSWERED, False),   # AnswerTime alone
    ("completed", 4000, 7, "", None, Out.ANSWERED, False),                       # Duration alone
    ("completed", None, 0, "", None, Out.NO_ANSWER, False),                      # neither: not answered
    ("completed", None, None, None, None, Out.NO_ANSWER, False),                 # the seed's own shape
    ("busy", None, 0, None, None, Out.BUSY, False),
    ("completed", 3010, 0, None, None, Out.BUSY, False),
    ("no-answer", None, 0, None, None, Out.NO_ANSWER, False),
    ("timeout", None, 0, None, None, Out.NO_ANSWER, False),
    ("completed", 3000, 0, None, None, Out.NO_ANSWER, False),
    ("completed", 6010, 0, None, None, Out.NO_ANSWER, False),
    ("failed", 2040, 0, None, None, Out.REJECTED, False),
    ("failed", 2030, 0, None, None, Out.REJECTED, False),
    ("failed", None, 0, None, None, Out.FAILED, False),
    ("failed", 2000, 0, None, None, Out.FAILED, False),
    ("completed", 2010, 0, None, None, Out.FAILED, False),
    ("completed", 2060, 0, None, None, Out.FAILED, False),
    ("completed", 4000, 9, "2024-05-01 10:00:05", "true", Out.MACHINE, False),
    ("completed", 4000, 1, "2024-05-01 10:00:05", "machine_detection", Out.MACHINE, False),
    ("cancel", None, 0, None, None, Out.CANCELLED, False),
    ("canceled", None, 0, None, None, Out.CANCELLED, False),
    ("completed", 1000, 0, None, None, Out.CANCELLED, False),
    ("failed", 1020, 0, None, None, Out.FAILED, True),
    ("in-progress", None, 0, None, None, Out.UNKNOWN, False),
    ("something-new", 9999, 0, None, None, Out.UNKNOWN, False),
])
def test_plivo_and_vobiz_outcomes(status: str, code: int | None, duration: int, answer_time: str | None,
                                  machine: str | None, outcome: Outcome, throttled: bool) -> None:
    result = plivo_outcome(status, code, duration, answer_time, machine)
    assert (result.outcome, result.throttled) == (outcome, throttled)


@pytest.mark.parametrize(("status", "outcome"), [
    ("completed", Out.ANSWERED), ("busy", Out.BUSY), ("no-answer", Out.NO_ANSWER), ("failed", Out.FAILED),
    ("canceled", Out.CANCELLED), ("Completed", Out.ANSWERED), ("weird", Out.UNKNOWN), (None, Out.UNKNOWN),
])
def test_tryvox_outcomes(status: str | None, outcome: Outcome) -> None:
    assert tryvox_outcome(status).outcome == outcome


@pytest.mark.parametrize(("duration", "answer_time", "end_reason", "outcome"), [
    (12, None, "callee-hangup", Out.ANSWERED),
    (0, "2026-04-09T10:30:05Z", None, Out.ANSWERED),
    (0, None, "callee-hangup", Out.NO_ANSWER),      # 0 s and no answer time: never answered
    (0, None, "busy", Out.BUSY),
    (None, None, "no-answer", Out.NO_ANSWER),
    (None, None, None, Out.ANSWERED),               # nothing but the status: taken at its word
])
def test_a_completed_tryvox_call_is_answered_only_with_evidence_of_an_answer(
    duration: int | None, answer_time: str | None, end_reason: str | None, outcome: Outcome
) -> None:
    result = tryvox_outcome("completed", duration=duration, answer_time=answer_time, end_reason=end_reason)
    assert result.outcome == outcome


ANSWERED_AT = datetime(2021, 1, 29, 3, 18, 7, tzinfo=UTC)


@pytest.mark.parametrize(("reason", "answer_at", "outcome"), [
    ("normal", ANSWERED_AT, Out.ANSWERED), ("normal", None, Out.NO_ANSWER),
    ("timeout", ANSWERED_AT, Out.ANSWERED), ("timeout", None, Out.NO_ANSWER),
    ("busy", None, Out.BUSY), ("noanswer", None, Out.NO_ANSWER), ("dialout", None, Out.NO_ANSWER),
    ("failed", None, Out.FAILED), ("amd", ANSWERED_AT, Out.MACHINE), ("cancel", None, Out.NO_ANSWER),
    ("", None, Out.UNKNOWN),
])
def test_voipbin_outcomes(reason: str, answer_at: datetime | None, outcome: Outcome) -> None:
    assert voipbin_outcome(reason, answer_at).outcome == outcome


@pytest.mark.parametrize(("cause", "answer_time", "sip", "outcome", "throttled"), [
    ("hangup", "2024-05-01T10:00:05Z", None, Out.ANSWERED, False),
    ("hangup", None, None, Out.UNKNOWN, False),
    ("busy", None, 486, Out.BUSY, False),
    ("hangup", None, 486, Out.BUSY, False),
    ("timeout", None, None, Out.NO_ANSWER, False),
    ("rejected", None, 603, Out.REJECTED, False),
    ("unknown", None, 603, Out.REJECTED, False),
    ("error", None, None, Out.FAILED, False),
    ("application-error", None, None, Out.FAILED, False),
    ("invalid-bxml", None, None, Out.FAILED, False),
    ("cancel", None, None, Out.CANCELLED, False),
    ("account-limit", None, None, Out.FAILED, True),
    ("node-capacity-exceeded", None, None, Out.FAILED, True),
    ("callback-error", None, None, Out.UNKNOWN, False),
    ("unknown", None, None, Out.UNKNOWN, False),
])
def test_bandwidth_outcomes(cause: str, answer_time: str | None, sip: int | None, outcome: Outcome,
                            throttled: bool) -> None:
    result = bandwidth_outcome(cause, answer_time, sip)
    assert (result.outcome, result.throttled) == (outcome, throttled)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01 10:00:05", datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)),
    ("2024-05-01 10:00:05.250000", datetime(2024, 5, 1, 10, 0, 5, 250000, tzinfo=UTC)),
    ("2024-05-01T10:00:05Z", datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)),
    ("2024-05-01T12:00:05+02:00", datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)),
    ("9999-01-01 00:00:00.000000", None), ("", None), (None, None), ("yesterday", None),
])
def test_parse_time(value: str | None, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_numbers_and_money() -> None:
    assert [parse_int(v) for v in ("12", 12, "12.0", "", None, "x")] == [12, 12, 12, None, None, None]
    assert parse_decimal("0.00850") == Decimal("0.00850") and parse_decimal("") is None
    start, end = parse_time("2024-05-01 10:00:05"), parse_time("2024-05-01 10:00:17.9")
    assert seconds_between(start, end) == 12 and seconds_between(end, start) is None


def test_event_key_and_required_fields() -> None:
    assert event_key("c1", "+1", "hangup", "completed") == "c1:+1:hangup:completed"
    assert event_key("c1", None, "ring", None) == "c1::ring:"
    assert require({"a": "", "b": "x"}, "a", "b") == "x"
    with pytest.raises(ValueError, match="callId"):
        require({}, "callId")
