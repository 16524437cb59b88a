"""Callback parsing per provider: every event kind, final outcomes, times, durations, keys, bad payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from campaigns.states import Outcome
from workers.providers.calls import CallbackEvent, EventKind, IncomingCallback
from workers.providers.registry import adapter_for

PLIVO_HANGUP = {
    "Event": "Hangup", "CallStatus": "completed", "RequestUUID": "req-1", "ALegRequestUUID": "req-1",
    "CallUUID": "call-1", "To": "14155550001", "From": "14155550000", "Direction": "outbound",
    "HangupCause": "NORMAL_CLEARING", "HangupCauseName": "Normal Hangup", "HangupCauseCode": "4000",
    "HangupSource": "Callee", "Duration": "12", "BillDuration": "60", "StartTime": "2024-05-01 10:00:00",
    "AnswerTime": "2024-05-01 10:00:05", "EndTime": "2024-05-01 10:00:17", "TotalCost": "0.00850",
}


def form(params: dict[str, str], hint: EventKind = EventKind.HANGUP) -> IncomingCallback:
    """A form-encoded POST callback."""
    return IncomingCallback(method="POST", url="https://dialer.test/cb", headers={},
                            body=urlencode(params).encode(), params=params, kind_hint=hint)


def json_callback(payload: Any, hint: EventKind = EventKind.STATUS) -> IncomingCallback:
    """A JSON POST callback."""
    return IncomingCallback(method="POST", url="https://dialer.test/cb", headers={},
                            body=json.dumps(payload).encode(), params={}, kind_hint=hint)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- Plivo / Vobiz ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
def test_plivo_family_hangup_in_our_words(provider: str) -> None:
    event = adapter_for(provider).parse_callback(form(PLIVO_HANGUP))
    assert (event.provider, event.kind, event.is_final, event.outcome) == (
        provider, EventKind.HANGUP, True, Outcome.ANSWERED)
    assert (event.request_uuid, event.call_uuid, event.destination) == ("req-1", "call-1", "14155550001")
    assert (event.duration, event.billed_duration, event.cost) == (12, 60, Decimal("0.00850"))
    assert event.answer_at == at("2024-05-01 10:00:05") and event.end_at == at("2024-05-01 10:00:17")
    assert event.hangup_cause == "Normal Hangup" and event.provider_status == "completed"
    assert event.event_key == "call-1:14155550001:hangup:completed"
    assert not event.throttled


@pytest.mark.parametrize(("params", "kind"), [
    ({"Event": "Ring", "CallStatus": "ringing"}, EventKind.RING),
    ({"Event": "StartApp", "CallStatus": "in-progress"}, EventKind.ANSWER),
    ({"Event": "StartApp", "CallStatus": "in-progress", "Machine": "true"}, EventKind.MACHINE),
])
def test_plivo_progress_events_are_not_final(params: dict[str, str], kind: EventKind) -> None:
    base = {"RequestUUID": "req-1", "CallUUID": "call-1", "To": "14155550001"}
    event = adapter_for("plivo").parse_callback(form({**base, **params}, hint=EventKind.STATUS))
    assert event.kind == kind and not event.is_final
    assert event.outcome == (Outcome.MACHINE if kind == EventKind.MACHINE else None)


def test_plivo_simultaneous_dial_limit_is_throttled() -> None:
    params = {**PLIVO_HANGUP, "CallStatus": "failed", "HangupCauseCode": "1020", "Duration": "0",
              "AnswerTime": "", "BillDuration": "0"}
    event = adapter_for("plivo").parse_callback(form(params))
    assert event.throttled and event.is_final and event.answer_at is None


def test_plivo_tolerates_missing_optional_fields_and_uses_the_url_kind() -> None:
    params = {"ALegRequestUUID": "req-9", "To": "14155550001", "CallStatus": "busy"}
    event = adapter_for("plivo").parse_callback(form(params, hint=EventKind.HANGUP))
    assert event.kind == EventKind.HANGUP and event.outcome == Outcome.BUSY
    assert event.request_uuid == "req-9" and event.call_uuid is None
    assert (event.duration, event.cost, event.end_at) == (None, None, None)


def test_plivo_reads_the_form_body_when_params_are_not_given() -> None:
    callback = form(PLIVO_HANGUP)
    bare = IncomingCallback(method="POST", url=callback.url, headers={}, body=callback.body, params={},
                            kind_hint=EventKind.STATUS)
    assert adapter_for("plivo").parse_callback(bare).outcome == Outcome.ANSWERED


def test_plivo_without_ids_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match="RequestUUID"):
        adapter_for("plivo").parse_callback(form({"Event": "Hangup", "To": "1"}))


def test_event_keys_are_stable_for_duplicates_and_distinct_across_events() -> None:
    adapter = adapter_for("plivo")
    ring = {"Event": "Ring", "CallStatus": "ringing", "RequestUUID": "req-1", "CallUUID": "call-1", "To": "1"}
    keys = [adapter.parse_callback(form(p)).event_key for p in (ring, dict(ring), PLIVO_HANGUP)]
    assert keys[0] == keys[1] != keys[2]


# --- TryVox ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("payload", "kind"), [
    ({"event": "call.ringing", "status": "ringing"}, EventKind.RING),
    ({"event": "call.answered", "status": "answered"}, EventKind.ANSWER),
    ({"event": "call.updated", "status": "in-progress"}, EventKind.ANSWER),
])
def test_tryvox_progress_events(payload: dict[str, str], kind: EventKind) -> None:
    event = adapter_for("tryvox").parse_callback(json_callback({"call_uuid": "c1", "to": "+1", **payload}))
    assert event.kind == kind and not event.is_final and event.outcome is None


def test_tryvox_hangup_in_our_words() -> None:
    payload = {"event": "call.hangup", "call_uuid": "c1", "request_uuid": "r1", "to": "+14155550001",
               "status": "completed", "duration": 42, "start_time": "2024-05-01T10:00:00Z",
               "answer_time": "2024-05-01T10:00:04Z", "end_time": "2024-05-01T10:00:46Z",
               "end_reason": "callee-hangup", "unexpected": {"ok": True}}
    event = adapter_for("tryvox").parse_callback(json_callback(payload, EventKind.HANGUP))
    assert (event.kind, event.is_final, event.outcome, event.duration) == (
        EventKind.HANGUP, True, Outcome.ANSWERED, 42)
    assert event.hangup_cause == "callee-hangup" and event.end_at == at("2024-05-01 10:00:46")
    assert event.event_key == "c1:+14155550001:hangup:completed"


def test_tryvox_final_status_is_final_whatever_the_event_name() -> None:
    event = adapter_for("tryvox").parse_callback(json_callback({"call_uuid": "c1", "status": "no-answer"}))
    assert event.is_final and event.outcome == Outcome.NO_ANSWER


@pytest.mark.parametrize(("body", "field"), [(b'{"status": "completed"}', "call_uuid"), (b"not json", "JSON"),
                                             (b"[1, 2]", "JSON object")])
def test_tryvox_bad_payloads_raise_value_error(body: bytes, field: str) -> None:
    callback = IncomingCallback("POST", "https://dialer.test/cb", {}, body, {}, EventKind.HANGUP)
    with pytest.raises(ValueError, match=field):
        adapter_for("tryvox").parse_callback(callback)


# --- VoIPbin ---------------------------------------------------------------------------------------------
def voipbin(event_type: str, **data: Any) -> CallbackEvent:
    call = {"id": "v1", "destination": {"type": "tel", "target": "+14155550001"}, "tm_ringing":
            "9999-01-01 00:00:00.000000", "tm_progressing": "9999-01-01 00:00:00.000000",
            "tm_hangup": "9999-01-01 00:00:00.000000", **data}
    return adapter_for("voipbin").parse_callback(json_callback({"type": event_type, "data": call}))


@pytest.mark.parametrize(("event_type", "status", "kind"), [
    ("call_ringing", "ringing", EventKind.RING), ("call_progressing", "progressing", EventKind.ANSWER),
    ("call_created", "dialing", EventKind.STATUS), ("call_terminating", "terminating", EventKind.STATUS),
    ("call_updated", "ringing", EventKind.RING),
])
def test_voipbin_progress_events(event_type: str, status: str, kind: EventKind) -> None:
    event = voipbin(event_type, status=status)
    assert event.kind == kind and not event.is_final and event.answer_at is None


def test_voipbin_hangup_in_our_words() -> None:
    event = voipbin("call_hangup", status="hangup", hangup_reason="normal", hangup_by="remote",
                    tm_ringing="2024-05-01 10:00:01.000000", tm_progressing="2024-05-01 10:00:05.100000",
                    tm_hangup="2024-05-01 10:00:35.200000")
    assert (event.kind, event.is_final, event.outcome, event.duration) == (
        EventKind.HANGUP, True, Outcome.ANSWERED, 30)
    assert event.ring_at == at("2024-05-01 10:00:01") and event.destination == "+14155550001"
    assert event.request_uuid == event.call_uuid == "v1"
    assert event.event_key == "v1:+14155550001:hangup:hangup"


def test_voipbin_machine_hangup_and_unreached_times() -> None:
    event = voipbin("call_hangup", status="hangup", hangup_reason="amd")
    assert event.outcome == Outcome.MACHINE and event.answer_at is None and event.duration is None


@pytest.mark.parametrize(("payload", "field"), [
    ({"type": "call_hangup"}, "data"), ({"type": "call_hangup", "data": {"status": "hangup"}}, "id")])
def test_voipbin_bad_payloads_raise_value_error(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        adapter_for("voipbin").parse_callback(json_callback(payload))


# --- Bandwidth -------------------------------------------------------------------------------------------
BANDWIDTH_DISCONNECT = {
    "eventType": "disconnect", "eventTime": "2024-05-01T10:00:40.000Z", "accountId": "99", "callId": "c-1",
    "to": "+14155550001", "from": "+14155550000", "direction": "outbound",
    "startTime": "2024-05-01T10:00:00Z", "answerTime": "2024-05-01T10:00:06.500Z",
    "endTime": "2024-05-01T10:00:40.000Z", "cause": "hangup",
    "tag": "batch-7",
}


def test_bandwidth_disconnect_in_our_words() -> None:
    event = adapter_for("bandwidth").parse_callback(json_callback(BANDWIDTH_DISCONNECT))
    assert (event.kind, event.is_final, event.outcome, event.duration, event.tag) == (
        EventKind.HANGUP, True, Outcome.ANSWERED, 33, "batch-7")
    assert event.event_key == "c-1:+14155550001:hangup:hangup"


def test_bandwidth_account_limit_is_throttled_with_its_error_message() -> None:
    payload = {**BANDWIDTH_DISCONNECT, "cause": "account-limit", "answerTime": None,
               "errorMessage": "Call rate limit exceeded"}
    event = adapter_for("bandwidth").parse_callback(json_callback(payload))
    assert event.throttled and event.hangup_cause == "account-limit: Call rate limit exceeded"
    assert event.duration is None


@pytest.mark.parametrize(("payload", "kind", "outcome"), [
    ({"eventType": "answer"}, EventKind.ANSWER, None),
    ({"eventType": "machineDetectionComplete", "machineDetectionResult": {"value": "answering-machine"}},
     EventKind.MACHINE, Outcome.MACHINE),
    ({"eventType": "machineDetectionComplete", "machineDetectionResult": {"value": "human"}},
     EventKind.STATUS, None),
    ({"eventType": "transferComplete"}, EventKind.STATUS, None),
])
def test_bandwidth_other_events(payload: dict[str, Any], kind: EventKind, outcome: Outcome | None) -> None:
    event = adapter_for("bandwidth").parse_callback(json_callback({"callId": "c-1", "to": "+1", **payload}))
    assert (event.kind, event.outcome, event.is_final) == (kind, outcome, False)


def test_bandwidth_without_call_id_names_the_field() -> None:
    with pytest.raises(ValueError, match="callId"):
        adapter_for("bandwidth").parse_callback(json_callback({"eventType": "disconnect"}))


def test_tryvox_machine_flag_is_honoured_when_present() -> None:
    adapter = adapter_for("tryvox")
    answered = {"event": "call.answered", "status": "answered", "call_uuid": "c1", "machine_detected": True}
    assert adapter.parse_callback(json_callback(answered)).kind == EventKind.MACHINE
    hangup = {"event": "call.hangup", "status": "completed", "call_uuid": "c1", "machine_detected": True}
    assert adapter.parse_callback(json_callback(hangup)).outcome == Outcome.MACHINE
