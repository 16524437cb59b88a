"""Pairing a carrier's accepted-request ids with the attempts sent in that request (pure)."""

from __future__ import annotations

from campaigns.store.dial_store import QueuedDestination, StartedAttempt
from workers.dialing.accepted_calls import match_accepted
from workers.providers.calls import CallsAccepted, PlacedCall


def _started(*numbers: str) -> list[StartedAttempt]:
    # Attempt ids 100, 101, ...: each destination's reserved attempt id is its attempt's.
    return [StartedAttempt(100 + i, QueuedDestination(i, n, "UTC", 0, 100 + i))
            for i, n in enumerate(numbers)]


def test_a_single_request_takes_the_answers_ids_whatever_its_number_says() -> None:
    match = match_accepted(_started("+14155550100"), CallsAccepted(["req"], [PlacedCall(None, "req", "c1")]))
    assert match.sent == [(100, "req", "c1")] and match.refused == []


def test_a_single_request_without_call_ids_gets_its_request_uuid() -> None:
    match = match_accepted(_started("+14155550100"), CallsAccepted(["req"], []))
    assert match.sent == [(100, "req", None)]
    assert match.provider_ids(CallsAccepted(["req"], [])) == ["req", "req"]


def test_a_bulk_matches_ids_by_number_with_or_without_plus() -> None:
    calls = [PlacedCall("14155550101", "r2", "c2"), PlacedCall("+14155550100", "r1", None)]
    accepted = CallsAccepted([], calls)
    match = match_accepted(_started("+14155550100", "+14155550101"), accepted)
    assert sorted(match.sent) == [(100, "r1", None), (101, "r2", "c2")]
    assert sorted(match.provider_ids(accepted)) == ["c2", "r1", "r2"]


def test_a_bulk_answer_with_only_request_ids_leaves_the_ids_to_callbacks() -> None:
    accepted = CallsAccepted(["bulk-req"], [])
    match = match_accepted(_started("+14155550100", "+14155550101"), accepted)
    assert match.sent == [(100, None, None), (101, None, None)]
    assert match.provider_ids(accepted) == ["bulk-req"]


def test_refused_destinations_of_a_bulk_are_not_marked_sent() -> None:
    accepted = CallsAccepted(["bulk-req"], [], refused=["14155550101"])
    match = match_accepted(_started("+14155550100", "+14155550101"), accepted)
    assert [a.attempt_id for a in match.refused] == [101]
    assert match.sent == [(100, "bulk-req", None)], "the one left takes the request id"


def test_a_number_listed_twice_is_matched_once() -> None:
    calls = [PlacedCall("+14155550100", "r1", None), PlacedCall("+14155550100", "r9", None)]
    accepted = CallsAccepted([], calls)
    match = match_accepted(_started("+14155550100", "+14155550101"), accepted)
    assert match.sent == [(100, "r1", None), (101, None, None)]
