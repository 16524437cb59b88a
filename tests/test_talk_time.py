"""Talk time of answered calls (issue 22: the demo's "talk time, s" was 0). Plivo's and Vobiz's seeds give
the hangup_url AnswerTime and EndTime but no Duration, which is what the simulator sends by default, so the
adapter takes an answered call's duration from answer to end; a Duration, where one is sent, still wins."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from campaigns.states import Outcome
from workers.providers.calls import EventKind, IncomingCallback
from workers.providers.registry import adapter_for

SEED_HANGUP = {  # Plivo's Make a call page's hangup_url parameters, nothing more
    "Event": "Hangup", "CallStatus": "completed", "RequestUUID": "req-1", "ALegRequestUUID": "req-1",
    "CallUUID": "call-1", "To": "14155550001", "From": "14155550000", "Direction": "outbound",
    "StartTime": "2024-05-01 10:00:00", "AnswerTime": "2024-05-01 10:00:05", "EndTime": "2024-05-01 10:00:17",
}


def hangup(params: dict[str, str]) -> IncomingCallback:
    body = urlencode(params).encode()
    return IncomingCallback(method="POST", url="https://dialer.example/callbacks/plivo/1/hangup",
                            headers={"content-type": "application/x-www-form-urlencoded"}, body=body,
                            params=params, kind_hint=EventKind.HANGUP)


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
def test_a_seed_shaped_answered_hangup_lasts_from_answer_to_end(provider: str) -> None:
    event = adapter_for(provider).parse_callback(hangup(SEED_HANGUP))
    assert event.outcome == Outcome.ANSWERED and event.duration == 12


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
def test_an_unanswered_hangup_has_no_talk_time(provider: str) -> None:
    event = adapter_for(provider).parse_callback(hangup({**SEED_HANGUP, "AnswerTime": ""}))
    assert event.outcome == Outcome.NO_ANSWER and event.duration is None


def test_a_duration_the_carrier_sends_wins_over_the_times() -> None:
    rich = {**SEED_HANGUP, "Duration": "11", "BillDuration": "60"}
    event = adapter_for("plivo").parse_callback(hangup(rich))
    assert (event.duration, event.billed_duration) == (11, 60)
