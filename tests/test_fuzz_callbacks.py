"""Every provider's callback parser against arbitrary form and JSON bodies (hypothesis): it never crashes;
it either returns an event that the boundary then accepts or refuses with a reason, or refuses the body
itself with a ValueError that says why. What the boundary accepts can always be stored.

Size: HYPOTHESIS_PROFILE=ci (make test) or soak (make fuzz).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.callbacks.event_payload import event_payload
from workers.providers.calls import EventKind, IncomingCallback
from workers.providers.fields import check_event, check_payload
from workers.providers.registry import adapter_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FORM_FIELDS = ["Event", "CallStatus", "RequestUUID", "ALegRequestUUID", "CallUUID", "To", "From", "Duration",
               "BillDuration", "HangupCauseCode", "HangupCauseName", "StartTime", "AnswerTime", "EndTime",
               "TotalCost", "Machine"]
JSON_FIELDS = ["event", "status", "call_uuid", "request_uuid", "to", "duration", "start_time", "answer_time",
               "end_time", "end_reason", "eventType", "callId", "cause", "answerTime", "endTime", "startTime",
               "sipResponseCode", "tag", "machineDetectionResult", "id", "hangup_reason", "tm_hangup",
               "tm_ringing", "tm_progressing", "destination", "cost", "type", "data"]

# Values a carrier (or an attacker with an account's credentials) might send: numbers in every spelling,
# times far off, control characters, huge text.
awkward_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1e30", "Infinity", "-Infinity", "NaN", "9223372036854775808", "-1", "0x10", "1_000",
                     "0001-01-01 00:00:00", "9998-12-31T00:00:00Z", "9999-01-01 00:00:00.000000",
                     "2025-01-01T10:00:00+14:00", "completed", "busy", "hangup", "Hangup", "StartApp", "\x00",
                     "call.hangup", "call_hangup", "disconnect", "true", "+12125550100", "sip:a@b"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(min_size=200, max_size=2000),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=True, allow_infinity=True), awkward_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner,
                                                                             max_size=4)), max_leaves=12)
json_bodies = st.one_of(
    st.dictionaries(st.sampled_from(JSON_FIELDS), json_value, max_size=12),
    st.fixed_dictionaries({"type": st.sampled_from(["call_hangup", "call_ringing", "x"]),
                           "data": st.dictionaries(st.sampled_from(JSON_FIELDS), json_value, max_size=10)}),
    json_value,
)
form_bodies = st.dictionaries(st.one_of(st.sampled_from(FORM_FIELDS), st.text(max_size=10)), awkward_text,
                              max_size=14)


def _encode_json(value: Any) -> bytes:
    return json.dumps(value).encode()  # json writes NaN/Infinity as bare words, as a sloppy sender would


def _check(provider: str, callback: IncomingCallback) -> None:
    adapter = adapter_for(provider)
    try:
        event = adapter.parse_callback(callback)
    except ValueError as exc:
        assert str(exc), "a refusal must say why"
        return
    try:
        check_event(event, NOW)
        raw = callback.params or dict(event.payload)
        check_payload(raw)
    except ValueError as exc:
        assert str(exc)
        return
    orjson.dumps(event_payload(event, raw), default=str)  # what the event store writes: must not fail


@pytest.mark.parametrize("provider", ["tryvox", "voipbin", "bandwidth"])
@given(body=json_bodies, kind=st.sampled_from(list(EventKind)))
def test_json_callback_parsers_never_crash(provider: str, body: Any, kind: EventKind) -> None:
    raw = _encode_json(body)
    _check(provider, IncomingCallback(method="POST", url="https://d.example/cb", body=raw, params={},
                                      headers={"content-type": "application/json"}, kind_hint=kind))


@pytest.mark.parametrize("provider", ["plivo", "vobiz", "tryvox"])
@given(form=form_bodies, kind=st.sampled_from(list(EventKind)))
def test_form_callback_parsers_never_crash(provider: str, form: dict[str, str], kind: EventKind) -> None:
    body = urlencode(form).encode()
    _check(provider, IncomingCallback(method="POST", url="https://d.example/cb", body=body, params=form,
                                      headers={"content-type": "application/x-www-form-urlencoded"},
                                      kind_hint=kind))


@pytest.mark.parametrize("provider", ["plivo", "vobiz", "tryvox", "voipbin", "bandwidth"])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_a_parser(provider: str, raw: bytes) -> None:
    _check(provider, IncomingCallback(method="POST", url="https://d.example/cb", body=raw, params={},
                                      headers={"content-type": "application/json"},
                                      kind_hint=EventKind.HANGUP))
