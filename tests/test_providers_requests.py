"""Call creation per provider: method, URL, auth, body fields, and parsing of the accepted answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from campaigns.states import Outcome
from workers.providers.calls import AccountCredentials, CallbackUrls, EventKind, OutboundCall, PlacedCall
from workers.providers.errors import Ambiguous, AuthFailed, Rejected
from workers.providers.http import make_client
from workers.providers.registry import PROVIDERS, adapter_for
from workers.providers.signatures import basic_auth_header

URLS = CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup",
                    ring_url="https://cb.test/ring", username="dialer", password="pw")
ACCOUNTS = {
    "plivo": AccountCredentials(1, "plivo", "MA123", "tok", "https://api.plivo.test"),
    "vobiz": AccountCredentials(2, "vobiz", "MA456", "tok", "https://api.vobiz.test/"),
    "tryvox": AccountCredentials(3, "tryvox", "acc3", "tvx_sk_test_1", "https://api.tryvox.test"),
    "voipbin": AccountCredentials(4, "voipbin", "cust4", "jwt-token", "https://api.voipbin.test"),
    "bandwidth": AccountCredentials(5, "bandwidth", "9900001", "api-pass", "https://voice.bandwidth.test",
                                    options={"application_id": "app-1", "api_username": "api-user"}),
}
# A 2xx answer each provider gives for one destination.
SINGLE_ANSWERS: dict[str, tuple[int, Any]] = {
    "plivo": (201, {"api_id": "a", "message": "call fired", "request_uuid": "req-1"}),
    "vobiz": (200, {"api_id": "a", "message": "Call fired", "request_uuid": "req-1"}),
    "tryvox": (201, {"request_uuid": "req-1", "call_uuid": "call-1", "status": "ringing"}),
    "voipbin": (200, [{"id": "req-1", "status": "dialing",
                       "destination": {"type": "tel", "target": "+14155550001"}}]),
    "bandwidth": (201, {"callId": "req-1", "to": "+14155550001"}),
}


def call_to(*destinations: str, **kwargs: Any) -> OutboundCall:
    """An OutboundCall from +14155550000 to these destinations."""
    return OutboundCall(caller_id="+14155550000", destinations=list(destinations), callbacks=URLS, **kwargs)


class Recorder:
    """A MockTransport handler that records requests and answers with one canned response."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def client_with(status: int, payload: Any,
                headers: dict[str, str] | None = None) -> tuple[httpx.Client, Recorder]:
    """A pooled client whose every request gets this JSON answer."""
    recorder = Recorder(lambda request: httpx.Response(status, json=payload, headers=headers))
    return make_client(transport=httpx.MockTransport(recorder)), recorder


def test_registry_knows_every_provider_of_the_schema() -> None:
    assert set(PROVIDERS) == {"plivo", "vobiz", "tryvox", "voipbin", "bandwidth"}
    assert all(adapter_for(name).traits.kind == name for name in PROVIDERS)
    with pytest.raises(ValueError, match="unknown provider 'twilio'"):
        adapter_for("twilio")


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_single_destination_answer_maps_destination_to_its_id(provider: str) -> None:
    client, recorder = client_with(*SINGLE_ANSWERS[provider])
    accepted = adapter_for(provider).create_calls(client, ACCOUNTS[provider], call_to("+14155550001"))
    assert accepted.request_uuids == ["req-1"]
    assert [c.to for c in accepted.calls] == ["+14155550001"]
    assert accepted.calls[0].request_uuid == "req-1"
    assert len(recorder.requests) == 1 and recorder.requests[0].method == "POST"


def test_plivo_request_shape() -> None:
    client, recorder = client_with(201, {"request_uuid": "r"})
    call = call_to("+14155550001", ring_timeout=30, time_limit=600, machine_detection="hangup",
                   extra={"caller_name": "Acme"})
    adapter_for("plivo").create_calls(client, ACCOUNTS["plivo"], call)
    request = recorder.requests[0]
    assert str(request.url) == "https://api.plivo.test/v1/Account/MA123/Call/"
    assert request.headers["authorization"] == basic_auth_header("MA123", "tok")
    assert recorder.body == {
        "from": "14155550000", "to": "14155550001", "answer_url": URLS.answer_url, "answer_method": "POST",
        "hangup_url": URLS.hangup_url, "hangup_method": "POST", "ring_url": URLS.ring_url,
        "ring_method": "POST", "ring_timeout": 30, "time_limit": 600, "machine_detection": "hangup",
        "caller_name": "Acme",
    }


def test_plivo_bulk_joins_destinations_and_leaves_calls_to_the_callbacks() -> None:
    client, recorder = client_with(201, {"message": "calls fired", "request_uuid": ["b", "a", "c"]})
    accepted = adapter_for("plivo").create_calls(
        client, ACCOUNTS["plivo"], call_to("+14155550001", "+14155550002", "sip:bob@sip.test"))
    assert recorder.body["to"] == "14155550001<14155550002<sip:bob@sip.test"
    assert accepted.request_uuids == ["b", "a", "c"]
    assert accepted.calls == []


def test_plivo_bulk_answer_is_read_only_for_the_fields_the_seed_names() -> None:
    # `invalid_number` is not a key any seed names: it must not fail a destination.
    client, _ = client_with(201, {"message": "calls fired", "request_uuid": ["a"],
                                  "invalid_number": ["14155550002"]})
    accepted = adapter_for("plivo").create_calls(
        client, ACCOUNTS["plivo"], call_to("+14155550001", "+14155550002"))
    assert accepted.refused == []
    assert accepted.request_uuids == ["a"]


def test_plivo_refuses_more_destinations_than_a_request_may_carry() -> None:
    client, recorder = client_with(201, {"request_uuid": "r"})
    numbers = [f"+1415555{i:04d}" for i in range(1001)]
    with pytest.raises(ValueError, match="1000"):
        adapter_for("plivo").create_calls(client, ACCOUNTS["plivo"], call_to(*numbers))
    assert recorder.requests == []


@pytest.mark.parametrize("provider", ["plivo", "vobiz", "tryvox"])
def test_accepted_answer_without_ids_is_ambiguous(provider: str) -> None:
    client, _ = client_with(201, {"message": "ok"})
    with pytest.raises(Ambiguous):
        adapter_for(provider).create_calls(client, ACCOUNTS[provider], call_to("+14155550001"))


def test_accepted_answer_that_is_not_json_is_ambiguous() -> None:
    recorder = Recorder(lambda request: httpx.Response(201, text="<html>ok</html>"))
    client = make_client(transport=httpx.MockTransport(recorder))
    with pytest.raises(Ambiguous):
        adapter_for("plivo").create_calls(client, ACCOUNTS["plivo"], call_to("+14155550001"))


def test_vobiz_uses_pascal_case_path_and_auth_headers() -> None:
    client, recorder = client_with(200, {"request_uuid": "r"})
    adapter_for("vobiz").create_calls(client, ACCOUNTS["vobiz"], call_to("+14155550001", "+14155550002"))
    request = recorder.requests[0]
    assert str(request.url) == "https://api.vobiz.test/api/v1/Account/MA456/Call/"
    assert request.headers["x-auth-id"] == "MA456" and request.headers["x-auth-token"] == "tok"
    assert "authorization" not in request.headers
    assert recorder.body["to"] == "14155550001<14155550002" and recorder.body["from"] == "14155550000"


@pytest.mark.parametrize(("detection", "expected"), [(None, "Disable"), ("true", "Enable")])
def test_tryvox_request_shape(detection: str | None, expected: str) -> None:
    client, recorder = client_with(201, {"request_uuid": "r", "call_uuid": "c"})
    accepted = adapter_for("tryvox").create_calls(client, ACCOUNTS["tryvox"],
                                                  call_to("+14155550001", machine_detection=detection))
    request = recorder.requests[0]
    assert str(request.url) == "https://api.tryvox.test/v1/voice/accounts/acc3/calls"
    assert request.headers["authorization"] == "Bearer tvx_sk_test_1"
    body = recorder.body
    assert (body["from"], body["to"], body["machine_detection"]) == ("+14155550000", "+14155550001", expected)
    assert body["answer_url"] == URLS.answer_url and body["hangup_url"] == URLS.hangup_url
    assert body["ring_timeout"] == 60 and body["time_limit"] == 14400
    assert accepted.calls == [PlacedCall(to="+14155550001", request_uuid="r", call_uuid="c")]


def test_voipbin_request_shape_with_default_talk_action() -> None:
    client, recorder = client_with(200, [{"id": "c1", "destination": {"target": "+14155550001"}},
                                         {"id": "c2", "destination": {"target": "+14155550002"}}])
    accepted = adapter_for("voipbin").create_calls(client, ACCOUNTS["voipbin"],
                                                   call_to("+14155550001", "+14155550002"))
    request = recorder.requests[0]
    assert request.url.path == "/v1.0/calls" and request.url.params["token"] == "jwt-token"
    body = recorder.body
    assert body["source"] == {"type": "tel", "target": "+14155550000"}
    assert body["destinations"] == [{"type": "tel", "target": "+14155550001"},
                                    {"type": "tel", "target": "+14155550002"}]
    # Seed troubleshooting: outbound actions start with {"type": "answer"}.
    assert [a["type"] for a in body["actions"]] == ["answer", "talk", "hangup"]
    assert body["actions"][1]["option"]["text"]
    assert accepted.request_uuids == ["c1", "c2"]
    assert accepted.calls[1] == PlacedCall(to="+14155550002", request_uuid="c2", call_uuid="c2")
    # A SIP URI has no address type on the page: refused, never sent as a guessed {"type": "sip"}.
    with pytest.raises(Rejected, match="SIP URI"):
        adapter_for("voipbin").create_calls(client, ACCOUNTS["voipbin"], call_to("sip:bob@sip.test"))


def test_voipbin_flow_id_replaces_actions() -> None:
    client, recorder = client_with(200, [{"id": "c1", "destination": {"target": "+14155550001"}}])
    adapter_for("voipbin").create_calls(client, ACCOUNTS["voipbin"],
                                        call_to("+14155550001", extra={"flow_id": "flow-9"}))
    assert recorder.body["flow_id"] == "flow-9" and "actions" not in recorder.body


def test_voipbin_accepts_the_calls_and_groupcalls_object() -> None:
    answer = {"calls": [{"id": "c1", "destination": {"target": "+14155550001"}}],
              "groupcalls": [{"id": "g1", "call_ids": ["c7"]}]}
    client, _ = client_with(200, answer)
    accepted = adapter_for("voipbin").create_calls(client, ACCOUNTS["voipbin"], call_to("+14155550001"))
    assert accepted.request_uuids == ["c1", "c7"]
    assert accepted.calls == [PlacedCall(to="+14155550001", request_uuid="c1", call_uuid="c1")]


def test_voipbin_answer_with_no_calls_is_ambiguous() -> None:
    client, _ = client_with(200, [])
    with pytest.raises(Ambiguous):
        adapter_for("voipbin").create_calls(client, ACCOUNTS["voipbin"], call_to("+14155550001"))


@pytest.mark.parametrize(("ring_timeout", "call_timeout"), [(30, 30), (900, 300), (0, 1)])
def test_bandwidth_request_shape(ring_timeout: int, call_timeout: int) -> None:
    client, recorder = client_with(201, {"callId": "c-1"})
    adapter_for("bandwidth").create_calls(client, ACCOUNTS["bandwidth"],
                                          call_to("+14155550001", ring_timeout=ring_timeout, tag="batch-7",
                                                  machine_detection="true"))
    request = recorder.requests[0]
    assert str(request.url) == "https://voice.bandwidth.test/api/v2/accounts/9900001/calls"
    assert request.headers["authorization"] == basic_auth_header("api-user", "api-pass")
    body = recorder.body
    assert {k: body[k] for k in ("from", "to", "applicationId", "answerUrl", "disconnectUrl", "callTimeout",
                                 "tag", "username", "password")} == {
        "from": "+14155550000", "to": "+14155550001", "applicationId": "app-1", "answerUrl": URLS.answer_url,
        "disconnectUrl": URLS.hangup_url, "callTimeout": call_timeout, "tag": "batch-7",
        "username": "dialer", "password": "pw"}
    assert body["machineDetection"]["mode"] == "async"


def test_bandwidth_without_application_id_pauses_instead_of_sending() -> None:
    client, recorder = client_with(201, {"callId": "c-1"})
    account = AccountCredentials(5, "bandwidth", "9900001", "api-pass", "https://voice.bandwidth.test")
    with pytest.raises(AuthFailed, match="application_id"):
        adapter_for("bandwidth").create_calls(client, account, call_to("+14155550001"))
    assert recorder.requests == []


def test_bandwidth_falls_back_to_the_location_header_for_the_call_id() -> None:
    client, _ = client_with(201, {}, headers={"Location": "https://voice.bandwidth.test/api/v2/accounts/9/calls/c-9"})
    accepted = adapter_for("bandwidth").create_calls(client, ACCOUNTS["bandwidth"], call_to("+14155550001"))
    assert accepted.request_uuids == ["c-9"]


# --- fetch_call_status ------------------------------------------------------------------------------------
FINAL_RECORDS: dict[str, tuple[str, dict[str, Any]]] = {
    "plivo": ("/v1/Account/MA123/Call/call-1/", {
        "call_uuid": "call-1", "call_status": "completed", "to_number": "14155550001", "call_duration": 12,
        "bill_duration": 60, "answer_time": "2024-05-01 10:00:05", "end_time": "2024-05-01 10:00:17",
        "hangup_cause_code": 4000, "hangup_cause_name": "Normal Hangup", "total_amount": "0.00850"}),
    "vobiz": ("/api/v1/Account/MA456/Call/call-1/", {
        "call_uuid": "call-1", "call_status": "busy", "to_number": "14155550001",
        "end_time": "2024-05-01 10:00:17", "hangup_cause_code": 3010}),
    "tryvox": ("/v1/voice/accounts/acc3/calls/call-1", {
        "call_uuid": "call-1", "status": "no-answer", "to": "+14155550001", "duration": 0}),
    "voipbin": ("/v1.0/calls/call-1", {
        "id": "call-1", "status": "hangup", "hangup_reason": "normal",
        "destination": {"target": "+14155550001"}, "tm_progressing": "2024-05-01 10:00:05.000000",
        "tm_hangup": "2024-05-01 10:00:17.500000"}),
    "bandwidth": ("/api/v2/accounts/9900001/calls/call-1", {
        "callId": "call-1", "state": "disconnected", "disconnectCause": "timeout", "to": "+14155550001"}),
}
FINAL_OUTCOMES = {"plivo": Outcome.ANSWERED, "vobiz": Outcome.BUSY, "tryvox": Outcome.NO_ANSWER,
                  "voipbin": Outcome.ANSWERED, "bandwidth": Outcome.NO_ANSWER}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_fetch_call_status_reads_a_finished_call(provider: str) -> None:
    path, record = FINAL_RECORDS[provider]
    client, recorder = client_with(200, record)
    adapter = adapter_for(provider)
    assert adapter.traits.api.has_call_status
    event = adapter.fetch_call_status(client, ACCOUNTS[provider], "req-1", "call-1")
    assert recorder.requests[0].method == "GET" and recorder.requests[0].url.path == path
    assert event is not None and event.is_final and event.kind == EventKind.HANGUP
    assert event.outcome == FINAL_OUTCOMES[provider]
    assert event.call_uuid == "call-1"


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_fetch_call_status_of_an_unknown_call_is_none(provider: str) -> None:
    client, _ = client_with(404, {"error": "not found"})
    assert adapter_for(provider).fetch_call_status(client, ACCOUNTS[provider], "req-1", "call-1") is None


def test_fetch_call_status_of_a_live_call_is_not_final() -> None:
    client, _ = client_with(200, {"call_uuid": "call-1", "status": "in-progress", "to": "+14155550001"})
    event = adapter_for("tryvox").fetch_call_status(client, ACCOUNTS["tryvox"], None, "call-1")
    assert event is not None and not event.is_final and event.kind == EventKind.ANSWER
