"""VoIPbin contract: token auth, E.164 with + only, list of call objects, signed customer webhooks."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaigns.states import Outcome
from tests.polling import wait_for
from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator
from workers.providers.calls import (
    AccountCredentials,
    CallbackEvent,
    CallbackUrls,
    EventKind,
    IncomingCallback,
    OutboundCall,
)
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

TOKEN, SECRET = "vb-token", "vb-webhook-secret"
# The seed's first example (VoIPbin's Call tutorial, Simple outbound call with TTS) with the answer action its
# troubleshooting section (Troubleshooting) requires at the start of outbound actions.
SEED_BODY = {
    "source": {"type": "tel", "target": "+15551234567"},
    "destinations": [{"type": "tel", "target": "+15559876543"}],
    "actions": [{"type": "answer"},
                {"type": "talk", "option": {"text": "hello. welcome to voipbin.", "language": "en-US"}}],
}


@pytest.fixture(scope="module")
def sim(sink: CallbackSink) -> Iterator[RunningSimulator]:
    config = {
        "accounts": [{"provider": "voipbin", "auth_id": "customer-1", "auth_token": TOKEN, "cps": 20,
                      "webhook_uri": sink.url("/voipbin"), "webhook_secret": SECRET,
                      "flow_ids": ["f089791a-ac78-4ea0-be88-8a8e131f9fc5"]}],
        "outcomes": {"answered": 0, "busy": 100, "no_answer": 0, "failed": 0, "machine": 0,
                     "ring_time": [1, 2], "talk_time": [3, 4]},
    }
    with start_simulator(config, speed=200, seed=9) as sim:
        yield sim


def test_voipbin_call_as_in_seed_returns_call_list_and_signed_webhooks(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    resp = httpx.post(f"{sim.base_url}/v1.0/calls", params={"token": TOKEN}, json=SEED_BODY)
    assert resp.status_code == 200
    calls = resp.json()
    assert isinstance(calls, list) and len(calls) == 1
    call = calls[0]
    assert call["status"] == "dialing" and call["direction"] == "outgoing"
    assert call["destination"]["target"] == "+15559876543" and call["tm_hangup"].startswith("9999-01-01")
    def hung_up(reqs: list[ReceivedCallback]) -> bool:
        return any(r.json()["type"] == "call_hangup" and r.json()["data"]["id"] == call["id"] for r in reqs)

    got = sink.wait_for(hung_up)
    mine = [r for r in got if r.json()["data"]["id"] == call["id"]]
    assert [r.json()["type"] for r in mine][-1] == "call_hangup"
    for r in mine:
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-voipbin-signature"] == expected
    hangup = mine[-1].json()["data"]
    assert (hangup["status"], hangup["hangup_reason"], hangup["hangup_by"]) == ("hangup", "busy", "remote")
    looked_up = httpx.get(f"{sim.base_url}/v1.0/calls/{call['id']}", params={"token": TOKEN}).json()
    assert looked_up["hangup_reason"] == "busy"


def test_voipbin_call_without_an_answer_action_hangs_up_at_once(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {**SEED_BODY, "actions": SEED_BODY["actions"][1:],
            "destinations": [{"type": "tel", "target": "+15559876544"}]}
    resp = httpx.post(f"{sim.base_url}/v1.0/calls", params={"token": TOKEN}, json=body)
    assert resp.status_code == 200
    call_id = resp.json()[0]["id"]

    def hung_up(reqs: list[ReceivedCallback]) -> bool:
        return any(r.json()["type"] == "call_hangup" and r.json()["data"]["id"] == call_id for r in reqs)

    hangup = next(r.json()["data"] for r in sink.wait_for(hung_up) if r.json()["type"] == "call_hangup"
                  and r.json()["data"]["id"] == call_id)
    assert hangup["hangup_reason"] == "failed" and hangup["tm_progressing"].startswith("9999-")


def test_voipbin_groupcall_and_errors(sim: RunningSimulator) -> None:
    url = f"{sim.base_url}/v1.0/calls"
    no_plus = {**SEED_BODY, "destinations": [{"type": "tel", "target": "15559876543"}]}
    assert httpx.post(url, params={"token": TOKEN}, json=no_plus).status_code == 400
    assert httpx.post(url, params={"token": "nope"}, json=SEED_BODY).status_code == 401
    unknown_flow = {k: v for k, v in SEED_BODY.items() if k != "actions"} | {"flow_id": "x"}
    assert httpx.post(url, params={"token": TOKEN}, json=unknown_flow).status_code == 404
    group = {**SEED_BODY, "destinations": [{"type": "tel", "target": "+15550000001"},
                                           {"type": "endpoint", "target": "test11@test"}]}
    resp = httpx.post(f"{sim.base_url}/v1.0/groupcalls", params={"token": TOKEN}, json=group)
    assert resp.status_code == 200 and len(resp.json()["call_ids"]) == 2


# --- one reading per point the page leaves open, each read right by the adapter ----------------------------
# Every call of this simulator goes unanswered; each account plays one reading of how that is ended and told.
UNANSWERED_ACCOUNTS = {
    "vb-forever": {},  # no call-level ring limit: the call rings until hung up through the API
    "vb-cancel-normal": {"voipbin_cancel_reason": "normal"},
    "vb-dialout": {"voipbin_ring_limit": "dialout"},
    "vb-callee-normal": {"voipbin_ring_limit": "callee", "voipbin_unanswered_reason": "normal",
                         "voipbin_signature": "bare", "voipbin_events": "updated"},
    "vb-callee-noanswer": {"voipbin_ring_limit": "callee", "voipbin_events": "hungup"},
}


@pytest.fixture(scope="module")
def unanswered(sink: CallbackSink) -> Iterator[RunningSimulator]:
    accounts = [{"provider": "voipbin", "auth_id": auth_id, "auth_token": f"{auth_id}-token", "cps": 20,
                 "webhook_uri": sink.url(f"/{auth_id}"), "webhook_secret": SECRET, **modes}
                for auth_id, modes in UNANSWERED_ACCOUNTS.items()]
    config = {"accounts": accounts,
              "outcomes": {"answered": 0, "busy": 0, "no_answer": 100, "failed": 0, "machine": 0,
                           "ring_time": [1, 2], "talk_time": [3, 4]}}
    with start_simulator(config, speed=200, seed=11) as sim:
        yield sim


def _place(sim: RunningSimulator, auth_id: str, number: str) -> str:
    body = {**SEED_BODY, "destinations": [{"type": "tel", "target": number}]}
    resp = httpx.post(f"{sim.base_url}/v1.0/calls", params={"token": f"{auth_id}-token"}, json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()[0]["id"])


def _final_webhook(sink: CallbackSink, auth_id: str, call_id: str) -> ReceivedCallback:
    def ended(reqs: list[ReceivedCallback]) -> bool:
        return any(r.path == f"/{auth_id}" and r.json()["data"]["id"] == call_id
                   and r.json()["data"]["status"] == "hangup" for r in reqs)

    return next(r for r in sink.wait_for(ended) if r.path == f"/{auth_id}"
                and r.json()["data"]["id"] == call_id and r.json()["data"]["status"] == "hangup")


def _as_the_adapter_reads_it(received: ReceivedCallback) -> CallbackEvent:
    account = AccountCredentials(7, "voipbin", "x", "tok", "http://127.0.0.1:9", webhook_secret=SECRET)
    callback = IncomingCallback("POST", "http://127.0.0.1/cb", received.headers, received.body, {},
                                EventKind.STATUS)
    adapter = adapter_for("voipbin")
    assert adapter.verify_callback(account, callback, None)
    return adapter.parse_callback(callback)


def _ledger_call(sim: RunningSimulator, call_id: str) -> dict[str, Any]:
    return next(c for c in sim.ledger()["calls"] if c["call_uuid"] == call_id)


def test_voipbin_rings_for_ever_unless_hung_up_and_the_dialer_reads_the_hangup_as_no_answer(
        unanswered: RunningSimulator, sink: CallbackSink) -> None:
    call_id = _place(unanswered, "vb-forever", "+15559870001")
    time.sleep(1.0)  # 200 carrier seconds: past any ring timeout a campaign could ask for
    assert _ledger_call(unanswered, call_id)["status"] == "ringing"  # nothing in the request bounds it
    hangup = httpx.post(f"{unanswered.base_url}/v1.0/calls/{call_id}/hangup",
                        params={"token": "vb-forever-token"})
    assert hangup.status_code == 200
    received = _final_webhook(sink, "vb-forever", call_id)
    data = received.json()["data"]
    assert (data["hangup_by"], data["hangup_reason"]) == ("local", "cancel")
    assert data["tm_progressing"].startswith("9999-")
    assert _as_the_adapter_reads_it(received).outcome == Outcome.NO_ANSWER


@pytest.mark.parametrize(("auth_id", "reason"), [
    ("vb-cancel-normal", "normal"),  # the hang-up API on a ringing call reported as a normal clearing
])
def test_voipbin_hangup_api_before_an_answer_in_each_reading_is_no_answer(
        unanswered: RunningSimulator, sink: CallbackSink, auth_id: str, reason: str) -> None:
    call_id = _place(unanswered, auth_id, "+15559870002")
    wait_for(lambda: _ledger_call(unanswered, call_id)["status"] == "ringing", 5, "the call ringing")
    assert httpx.post(f"{unanswered.base_url}/v1.0/calls/{call_id}/hangup",
                      params={"token": f"{auth_id}-token"}).status_code == 200
    received = _final_webhook(sink, auth_id, call_id)
    assert received.json()["data"]["hangup_reason"] == reason
    assert _as_the_adapter_reads_it(received).outcome == Outcome.NO_ANSWER


@pytest.mark.parametrize(("auth_id", "number", "reason", "event_type"), [
    ("vb-dialout", "+15559870003", "dialout", "call_hangup"),  # VoIPbin's own 60 s dial timeout
    ("vb-callee-normal", "+15559870004", "normal", "call_updated"),  # "normal" with no tm_progressing
    ("vb-callee-noanswer", "+15559870005", "noanswer", "call_hungup"),
])
def test_voipbin_unanswered_calls_in_each_reading_end_as_no_answer(
        unanswered: RunningSimulator, sink: CallbackSink, auth_id: str, number: str, reason: str,
        event_type: str) -> None:
    call_id = _place(unanswered, auth_id, number)
    received = _final_webhook(sink, auth_id, call_id)
    assert received.json()["type"] == event_type
    data = received.json()["data"]
    assert data["hangup_reason"] == reason and data["tm_progressing"].startswith("9999-")
    if auth_id == "vb-callee-normal":  # the bare-hex reading of the signature
        assert not received.headers["x-voipbin-signature"].startswith("sha256=")
    event = _as_the_adapter_reads_it(received)
    assert (event.kind, event.is_final, event.outcome) == (EventKind.HANGUP, True, Outcome.NO_ANSWER)


@pytest.mark.parametrize(("action", "status"), [
    # page, Simple outbound call with media file play
    ({"type": "play", "option": {"stream_urls": ["https://media.example/a.wav"]}}, 200),
    ({"type": "play", "option": {"stream_urls": []}}, 400),
    ({"type": "play", "option": {"stream_url": "https://media.example/a.wav"}}, 400),
    ({"type": "play"}, 400),
    ({"type": "talk", "option": {"language": "en-US"}}, 400),
    ({"type": "amd", "option": {"machine_handle": "hangup", "async": False}}, 200),
    ({"type": "amd", "option": {"machine_handle": "voicemail"}}, 400),
])
def test_voipbin_checks_the_shape_of_play_talk_and_amd_actions(
        sim: RunningSimulator, action: dict[str, Any], status: int) -> None:
    body = {**SEED_BODY, "actions": [{"type": "answer"}, action, {"type": "hangup"}],
            "destinations": [{"type": "tel", "target": "+15559876599"}]}
    assert httpx.post(f"{sim.base_url}/v1.0/calls", params={"token": TOKEN}, json=body).status_code == status


def test_the_adapters_audio_request_is_one_the_simulator_accepts(sim: RunningSimulator) -> None:
    account = AccountCredentials(7, "voipbin", "customer-1", TOKEN, sim.base_url)
    urls = CallbackUrls(answer_url="http://127.0.0.1:9/a", hangup_url="http://127.0.0.1:9/h")
    call = OutboundCall(caller_id="+15551234567", destinations=["+15559876598"], callbacks=urls,
                        audio_url="https://media.example/reminder.wav", machine_detection="hangup")
    with make_client() as client:
        accepted = adapter_for("voipbin").create_calls(client, account, call)
    assert len(accepted.calls) == 1
