"""Every adapter against its provider's own API reference page (its *seed*: Plivo's Make a call, Vobiz's Make
an Outbound Call, TryVox's Make a Call, VoIPbin's Call tutorial, Bandwidth's Create Call): payloads copied
from the pages' own examples where they have them, else built from exactly the fields the page names.
docs/PROVIDERS.md cites these tests row by row; each case names the page's section (and parameter) it follows.
The hangup_url cases above: AnswerTime, CallStatus and the machine parameter as both pages' hangup_url
parameters and Plivo's `machine_detection` argument give them."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from campaigns.states import Outcome
from workers.providers.calls import (
    AccountCredentials,
    CallbackUrls,
    EventKind,
    IncomingCallback,
    LookedUp,
    OutboundCall,
    PlacedCall,
)
from workers.providers.errors import AuthFailed, Rejected
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

URLS = CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup",
                    ring_url="https://cb.test/ring", machine_detection_url="https://cb.test/machine",
                    username="dialer", password="pw")
ACCOUNTS = {
    "plivo": AccountCredentials(1, "plivo", "MA123", "tok", "https://api.plivo.test"),
    "vobiz": AccountCredentials(2, "vobiz", "MA_XXXXXX", "tok", "https://api.vobiz.test"),
    "tryvox": AccountCredentials(3, "tryvox", "your_auth_id", "tvx_sk_live_x", "https://api.tryvox.test"),
    "voipbin": AccountCredentials(4, "voipbin", "cust", "tok", "https://api.voipbin.test"),
    "bandwidth": AccountCredentials(5, "bandwidth", "55555555", "api-pass", "https://voice.bandwidth.test",
                                    options={"application_id": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
                                             "api_username": "api-user"}),
}


def call_to(*destinations: str, **kwargs: Any) -> OutboundCall:
    return OutboundCall(caller_id="+14155551234", destinations=list(destinations), callbacks=URLS, **kwargs)


def sent_body(provider: str, answer: tuple[int, Any], call: OutboundCall,
              account: AccountCredentials | None = None) -> tuple[dict[str, Any], Any]:
    """The JSON body the adapter sends, and what create_calls made of `answer`."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answer[0], json=answer[1])

    with make_client(transport=httpx.MockTransport(handler)) as client:
        accepted = adapter_for(provider).create_calls(client, account or ACCOUNTS[provider], call)
    return json.loads(seen[0].content), accepted


def form(params: dict[str, str], hint: EventKind, zone: str | None = None) -> IncomingCallback:
    return IncomingCallback(method="POST", url="https://dialer.test/cb", headers={},
                            body=urlencode(params).encode(), params=params, kind_hint=hint, time_zone=zone)


# --- Plivo and Vobiz --------------------------------------------------------------------------------
# The hangup_url parameters exactly as both pages list them (Plivo: hangup_url parameters; Vobiz: Parameters
# Sent to hangup_url).
SEED_HANGUP = {
    "From": "14157654321", "To": "14153464321", "RequestUUID": "req-1", "ALegRequestUUID": "req-1",
    "CallUUID": "call-1", "Direction": "outbound", "ALegUUID": "call-1", "Event": "Hangup",
    "stir_verification": "Not Applicable", "CallStatus": "completed", "StartTime": "2026-04-09 16:00:00",
    "SessionStart": "2026-04-09 10:30:00.00000", "EndTime": "2026-04-09 16:00:40",
    "STIRAttestation": "Not Applicable",
}
ANSWERED = {**SEED_HANGUP, "AnswerTime": "2026-04-09 16:00:05"}
SEED_RING = {k: SEED_HANGUP[k] for k in ("From", "To", "RequestUUID", "ALegRequestUUID", "CallUUID",
                                         "Direction", "SessionStart", "STIRAttestation")}


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
@pytest.mark.parametrize(("params", "outcome"), [
    (ANSWERED, Outcome.ANSWERED),                                  # AnswerTime only when answered
    (SEED_HANGUP, Outcome.NO_ANSWER),                              # CallStatus always "completed"
    ({**ANSWERED, "Machine": "true"}, Outcome.MACHINE),            # machine_detection=true
    ({**ANSWERED, "machine": "machine_detection"}, Outcome.MACHINE),  # machine_detection=hangup
    ({**SEED_HANGUP, "HangupCauseCode": "3010"}, Outcome.BUSY),   # a finer cause, used when present
])
def test_plivo_and_vobiz_seed_hangups_end_as_answered_or_not_answered(
    provider: str, params: dict[str, str], outcome: Outcome
) -> None:
    event = adapter_for(provider).parse_callback(form(params, EventKind.HANGUP))
    assert (event.kind, event.is_final, event.outcome) == (EventKind.HANGUP, True, outcome)
    assert (event.request_uuid, event.call_uuid, event.destination) == ("req-1", "call-1", "14153464321")


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
def test_plivo_and_vobiz_ring_and_answer_as_in_the_seed(provider: str) -> None:
    adapter = adapter_for(provider)
    ring = adapter.parse_callback(form({**SEED_RING, "Event": "Ring", "CallStatus": "ringing"},
                                       EventKind.RING))
    answer = adapter.parse_callback(form({**SEED_RING, "Event": "StartApp", "CallStatus": "in-progress",
                                          "ALegUUID": "call-1"}, EventKind.ANSWER))
    assert (ring.kind, ring.is_final) == (EventKind.RING, False)
    assert (answer.kind, answer.is_final) == (EventKind.ANSWER, False)


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
@pytest.mark.parametrize(("zone", "answered_utc"), [
    (None, datetime(2026, 4, 9, 16, 0, 5, tzinfo=UTC)),             # default: the console zone is UTC
    # "local time" (plivo hangup_url parameters)
    ("Asia/Kolkata", datetime(2026, 4, 9, 10, 30, 5, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 4, 9, 20, 0, 5, tzinfo=UTC)),
])
def test_plivo_and_vobiz_times_are_read_in_the_accounts_console_zone(
    provider: str, zone: str | None, answered_utc: datetime
) -> None:
    event = adapter_for(provider).parse_callback(form(ANSWERED, EventKind.HANGUP, zone))
    assert event.answer_at == answered_utc
    assert event.end_at is not None and (event.end_at - answered_utc).total_seconds() == 35


def test_plivo_body_has_the_seeds_fields_and_synchronous_machine_detection() -> None:
    body, accepted = sent_body("plivo", (201, {"api_id": "a", "message": "call fired", "request_uuid": "r1"}),
                               call_to("+14157654321", machine_detection="hangup", ring_timeout=30))
    # country code + number (Arguments: `from`, `to`)
    assert body["from"] == "14155551234" and body["to"] == "14157654321"
    assert body["answer_url"] == URLS.answer_url and body["answer_method"] == "POST"
    # Arguments: `ring_timeout`, `machine_detection`
    assert body["ring_timeout"] == 30 and body["machine_detection"] == "hangup"
    assert "machine_detection_url" not in body, "it would switch Plivo to asynchronous detection (Arguments)"
    assert accepted.calls == [PlacedCall(to="+14157654321", request_uuid="r1")]


@pytest.mark.parametrize("provider", ["plivo", "vobiz"])
@pytest.mark.parametrize("value", ["false", "yes", "True"])
def test_plivo_and_vobiz_machine_detection_takes_only_the_seeds_values(provider: str, value: str) -> None:
    with pytest.raises(ValueError, match="true or hangup"):
        sent_body(provider, (201, {"request_uuid": "r"}), call_to("+14157654321", machine_detection=value))


def test_vobiz_has_no_ring_timeout_and_bounds_the_call_with_hangup_on_ring() -> None:
    # The seed's answer (Success Response (200 OK)): 200 OK, "Call fired", request_uuid.
    answer = (200, {"api_id": "b6b9-…", "message": "Call fired", "request_uuid": "9834029e-58b6"})
    body, accepted = sent_body("vobiz", answer, call_to("+14157654321", ring_timeout=30, time_limit=120))
    assert "ring_timeout" not in body, "not a Vobiz field"
    # Advanced Parameters: `hangup_on_ring`: from the start of ringing
    assert body["hangup_on_ring"] == 150 and body["time_limit"] == 120
    assert accepted.request_uuids == ["9834029e-58b6"]


def test_a_bulk_answer_is_read_for_request_ids_only() -> None:
    answer = (201, {"api_id": "a", "message": "calls fired", "request_uuid": ["r2", "r1"],
                    "invalid_number": ["14150000000"]})
    _, accepted = sent_body("plivo", answer, call_to("+14157654321", "+14153464321"))
    assert accepted.request_uuids == ["r2", "r1"] and accepted.calls == [] and accepted.refused == []


@pytest.mark.parametrize(("provider", "request_uuid", "call_uuid", "asked"), [
    ("plivo", "req", "call", "call"),
    ("plivo", "req", None, None),      # Plivo's Call retrieve takes a call uuid; a request uuid differs
    # vobiz Success Response (200 OK): request_uuid is equivalent to call_uuid
    ("vobiz", "req", None, "req"),
    ("vobiz", "req", "call", "call"),
    ("tryvox", "req", "call", "call"),  # tryvox Response Fields: call_uuid "for subsequent operations"
    ("tryvox", "req", None, None),
    ("voipbin", "id", "id", "id"),
    ("bandwidth", "c-1", "c-1", "c-1"),
])
def test_status_lookups_use_the_id_each_api_takes(
    provider: str, request_uuid: str, call_uuid: str | None, asked: str | None
) -> None:
    assert adapter_for(provider).status_lookup_id(request_uuid, call_uuid) == asked


def test_only_vobiz_request_ids_can_be_looked_up() -> None:
    assert [p for p in ("plivo", "vobiz", "tryvox", "voipbin", "bandwidth")
            if adapter_for(p).traits.api.request_ids_lookup] == ["vobiz"]


# --- TryVox -----------------------------------------------------------------------------------------
def test_tryvox_request_and_answer_as_in_the_seed_example() -> None:
    answer = (201, {"request_uuid": "550e8400-e29b-41d4-a716-446655440000",
                    "call_uuid": "650e8400-e29b-41d4-a716-446655440000", "from": "+14155551234",
                    "to": "+14155556789", "direction": "outbound", "status": "ringing",
                    "created_at": "2026-04-09T10:30:00Z"})  # page, Response; Response Fields
    body, accepted = sent_body("tryvox", answer, call_to("+14155556789", machine_detection="true"))
    seed_fields = {"from", "to", "answer_url", "answer_method", "ring_url", "hangup_url", "fallback_url",
                   "ring_timeout", "time_limit", "machine_detection"}  # Request Parameters
    assert set(body) <= seed_fields and body["machine_detection"] == "Enable"
    assert accepted.calls[0].call_uuid == "650e8400-e29b-41d4-a716-446655440000"


@pytest.mark.parametrize(("payload", "outcome"), [
    ({"status": "completed", "duration": 42, "end_reason": "callee-hangup"}, Outcome.ANSWERED),
    ({"status": "completed", "duration": 0, "end_reason": "caller-hangup"}, Outcome.NO_ANSWER),
    ({"status": "busy", "duration": 0}, Outcome.BUSY),
    ({"status": "failed"}, Outcome.FAILED),
])
@pytest.mark.parametrize("encoding", ["json", "form"])
def test_tryvox_hangups_in_json_or_form_end_by_status_and_answer_evidence(
    payload: dict[str, Any], outcome: Outcome, encoding: str
) -> None:
    fields = {"call_uuid": "c1", "to": "+14155556789", "event": "call.hangup", **payload}
    if encoding == "json":
        incoming = IncomingCallback(method="POST", url="https://dialer.test/cb", headers={},
                                    body=json.dumps(fields).encode(), params={}, kind_hint=EventKind.HANGUP)
    else:
        incoming = form({k: str(v) for k, v in fields.items()}, EventKind.HANGUP)
    event = adapter_for("tryvox").parse_callback(incoming)
    assert (event.is_final, event.outcome, event.call_uuid) == (True, outcome, "c1")


# --- VoIPbin ----------------------------------------------------------------------------------------
# The seed's answer to its first example (Simple outbound call with media file play), its comments removed.
VOIPBIN_ANSWER = [{
    "id": "a023bfa8-1091-4e94-8eaa-7f01fbecc71a", "user_id": 1,
    "flow_id": "f089791a-ac78-4ea0-be88-8a8e131f9fc5",
    "type": "flow", "source": {"type": "tel", "target": "+15551234567", "name": ""},
    "destination": {"type": "tel", "target": "+15559876543", "name": ""}, "status": "dialing",
    "direction": "outgoing", "hangup_by": "", "hangup_reason": "", "tm_create": "2021-02-04 04:44:20.904662",
    "tm_update": "", "tm_progressing": "", "tm_ringing": "", "tm_hangup": "",
}]


@pytest.mark.parametrize(("machine", "types"), [
    (None, ["answer", "talk", "hangup"]),
    ("hangup", ["answer", "amd", "talk", "hangup"]),
])
def test_voipbin_actions_start_with_answer_and_speak_the_campaigns_message(
    machine: str | None, types: list[str]
) -> None:
    body, accepted = sent_body("voipbin", (200, VOIPBIN_ANSWER),
                               call_to("+15559876543", message="Your appointment is at 10",
                                       machine_detection=machine))
    assert [a["type"] for a in body["actions"]] == types  # page, Troubleshooting
    talk = next(a for a in body["actions"] if a["type"] == "talk")
    assert talk["option"] == {"text": "Your appointment is at 10", "language": "en-US"}
    assert accepted.calls == [PlacedCall(to="+15559876543", request_uuid=VOIPBIN_ANSWER[0]["id"],
                                         call_uuid=VOIPBIN_ANSWER[0]["id"])]


def test_voipbin_customer_actions_get_an_answer_first() -> None:
    talk = {"type": "talk", "option": {"text": "hi", "language": "en-US"}}
    body, _ = sent_body("voipbin", (200, VOIPBIN_ANSWER), call_to("+15559876543", extra={"actions": [talk]}))
    assert body["actions"] == [{"type": "answer"}, talk]


def test_voipbin_refuses_an_answer_url_it_cannot_fetch() -> None:
    with pytest.raises(Rejected, match="answer URL"):
        sent_body("voipbin", (200, VOIPBIN_ANSWER),
                  call_to("+15559876543", script_url="https://ivr.example/answer"))


def test_voipbin_record_from_the_seeds_get_call_example() -> None:
    record = {  # page, Get specific call
        "id": "f457951b-9918-44af-a834-2216b1cc31bc", "type": "flow",
        "source": {"type": "tel", "target": "+15551234567", "name": ""},
        "destination": {"type": "tel", "target": "+15559876543", "name": ""}, "status": "hangup",
        "direction": "outgoing", "hangup_by": "remote", "hangup_reason": "normal",
        "tm_create": "2021-01-29 03:17:54.349101", "tm_update": "2021-01-29 03:18:22.131000",
        "tm_progressing": "2021-01-29 03:18:07.810000", "tm_ringing": "2021-01-29 03:17:55.392000",
        "tm_hangup": "2021-01-29 03:18:22.131000",
    }
    event = adapter_for("voipbin").event_from_record(record, LookedUp(None, None, record["id"]))
    assert event is not None and (event.is_final, event.outcome) == (True, Outcome.ANSWERED)
    assert event.duration == 14 and event.destination == "+15559876543"


def _voipbin_hangup(reason: str, progressing: str, ringing: str = "2021-01-29 03:17:55.392000",
                    ) -> dict[str, Any]:
    return {"id": "f457951b-9918-44af-a834-2216b1cc31bc", "status": "hangup", "direction": "outgoing",
            "destination": {"type": "tel", "target": "+15559876543", "name": ""}, "hangup_by": "remote",
            "hangup_reason": reason, "tm_progressing": progressing, "tm_ringing": ringing,
            "tm_hangup": "2021-01-29 03:18:22.131000"}


@pytest.mark.parametrize(("reason", "progressing", "ringing", "outcome"), [
    # Get specific call
    ("normal", "2021-01-29 03:18:07.810000", "2021-01-29 03:17:55.392000", Outcome.ANSWERED),
    ("normal", "2021-02-06 09:47:10.626000", "", Outcome.ANSWERED),  # Get call list: answered, no tm_ringing
    # Simple outbound call with Branch
    ("normal", "9999-01-01 00:00:00.000000", "2021-01-29 03:17:55.392000", Outcome.NO_ANSWER),
    # Simple outbound call with media file play: "" before any progress
    ("normal", "", "", Outcome.NO_ANSWER),
    ("timeout", "2021-01-29 03:18:07.810000", "", Outcome.ANSWERED),  # its maximum call time, after answer
    ("timeout", "9999-01-01 00:00:00.000000", "", Outcome.NO_ANSWER),
    ("cancel", "9999-01-01 00:00:00.000000", "2021-01-29 03:17:55.392000", Outcome.NO_ANSWER),
    ("dialout", "9999-01-01 00:00:00.000000", "2021-01-29 03:17:55.392000", Outcome.NO_ANSWER),
    ("amd", "2021-01-29 03:18:07.810000", "", Outcome.MACHINE),
])
def test_a_voipbin_normal_hangup_is_answered_only_when_tm_progressing_shows_the_answer(
    reason: str, progressing: str, ringing: str, outcome: Outcome
) -> None:
    record = _voipbin_hangup(reason, progressing, ringing)
    event = adapter_for("voipbin").event_from_record(record, LookedUp(None, None, record["id"]))
    assert event is not None and event.is_final and event.outcome == outcome


def test_voipbin_plays_the_campaigns_audio_through_a_play_action() -> None:
    audio = "https://media.example/reminder.wav"
    body, _ = sent_body("voipbin", (200, VOIPBIN_ANSWER),
                        call_to("+15559876543", message="spoken only without audio", audio_url=audio))
    # page, Simple outbound call with media file play: play with option.stream_urls
    assert body["actions"] == [
        {"type": "answer"}, {"type": "play", "option": {"stream_urls": [audio]}}, {"type": "hangup"}]


def test_voipbin_machine_hangup_is_a_synchronous_amd_action_and_detect_only_is_refused() -> None:
    body, _ = sent_body("voipbin", (200, VOIPBIN_ANSWER), call_to("+15559876543", machine_detection="hangup"))
    assert body["actions"][1] == {"type": "amd", "option": {"machine_handle": "hangup", "async": False}}
    with pytest.raises(Rejected, match="machine_detection 'true' is not offered"):
        sent_body("voipbin", (200, VOIPBIN_ANSWER), call_to("+15559876543", machine_detection="true"))
    assert adapter_for("voipbin").traits.options.machine_detection_modes == frozenset({"hangup"})


def test_voipbin_refuses_a_sip_uri_instead_of_sending_a_guessed_sip_address() -> None:
    with pytest.raises(Rejected, match="SIP URI"):
        sent_body("voipbin", (200, VOIPBIN_ANSWER), call_to("sip:alice@example.com"))
    options = adapter_for("voipbin").traits.options
    assert options.destination_kinds == frozenset({"tel"}) and options.supported == frozenset({"audio_url"})


def test_voipbin_takes_no_call_limits_so_the_dialer_ends_its_calls() -> None:
    traits = adapter_for("voipbin").traits
    body, _ = sent_body("voipbin", (200, VOIPBIN_ANSWER),
                        call_to("+15559876543", ring_timeout=20, time_limit=90))
    assert not {"ring_timeout", "timeout", "time_limit", "dial_timeout"} & set(body)  # no such field exists
    assert traits.api.dialer_enforces == {"ring", "time"} and traits.api.has_hangup
    assert traits.limits.max_ring_timeout_s == 60  # VoIPbin's own dial timeout ends a longer ring


@pytest.mark.parametrize("shape", ["prefixed", "bare"])
def test_voipbin_signature_is_read_with_or_without_its_sha256_prefix(shape: str) -> None:
    body = json.dumps({"type": "call_hangup", "data": _voipbin_hangup("busy", "")}).encode()
    digest = hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    header = f"sha256={digest}" if shape == "prefixed" else digest
    account = AccountCredentials(4, "voipbin", "cust", "tok", "https://api.voipbin.test",
                                 webhook_secret="whsec")
    callback = IncomingCallback("POST", "https://cb.test/x", {"x-voipbin-signature": header}, body, {},
                                EventKind.HANGUP)
    adapter = adapter_for("voipbin")
    assert adapter.verify_callback(account, callback, None)
    forged = IncomingCallback("POST", "https://cb.test/x", {"x-voipbin-signature": "sha256=" + "0" * 64},
                              body, {}, EventKind.HANGUP)
    assert not adapter.verify_callback(account, forged, None)


@pytest.mark.parametrize("event_type", ["call_hangup", "call_hungup", "call_updated"])
def test_voipbin_hangup_is_read_under_each_event_name(event_type: str) -> None:
    body = json.dumps({"type": event_type, "data": _voipbin_hangup("busy", "")}).encode()
    callback = IncomingCallback("POST", "https://cb.test/x", {}, body, {}, EventKind.STATUS)
    event = adapter_for("voipbin").parse_callback(callback)
    assert (event.kind, event.is_final, event.outcome) == (EventKind.HANGUP, True, Outcome.BUSY)


# --- Bandwidth --------------------------------------------------------------------------------------
def test_bandwidth_request_and_answer_as_in_the_seed_example() -> None:
    answer = (201, {  # page, Example 1 of 1, 201 answer
        "from": "+19195551212", "to": "+19195551313", "applicationId": "7fc9698a-b04a-468b-9e8f-91238c0d0086",
        "callId": "c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d",
        "callUrl": "https://voice.bandwidth.com/api/v2/accounts/55555555/calls/c-95ac8d6e",
        "callTimeout": 30, "answerUrl": "http://www.myapp.com/hello", "answerMethod": "POST",
        "disconnectUrl": None, "disconnectMethod": "POST", "username": None, "password": None, "tag": None,
    })
    body, accepted = sent_body("bandwidth", answer, call_to("+19195551313", tag="batch-1", ring_timeout=500))
    seed_fields = {"from", "to", "applicationId", "answerUrl", "answerMethod", "disconnectUrl",
                   "disconnectMethod", "username", "password", "callTimeout", "tag"}  # Supported Parameters
    assert set(body) == seed_fields
    assert body["callTimeout"] == 300  # Supported Parameters: `callTimeout`: between 1 and 300
    assert accepted.request_uuids == ["c-95ac8d6e-1a31c52e-b38f-4198-93c1-51633ec68f8d"]


def test_bandwidth_authenticates_with_the_api_user_never_the_account_id() -> None:
    without_user = AccountCredentials(5, "bandwidth", "55555555", "api-pass", "https://voice.bandwidth.test",
                                      options={"application_id": "app"})
    with pytest.raises(AuthFailed, match="API user"):
        sent_body("bandwidth", (201, {"callId": "c-1"}), call_to("+19195551313"), without_user)
    header = adapter_for("bandwidth").auth_headers(ACCOUNTS["bandwidth"])["Authorization"]
    assert header == httpx.BasicAuth("api-user", "api-pass")._auth_header


def test_bandwidth_tag_is_at_most_256_characters() -> None:
    with pytest.raises(ValueError, match="256"):
        sent_body("bandwidth", (201, {"callId": "c-1"}), call_to("+19195551313", tag="x" * 257))
