"""TryVox where its page is silent: the simulator speaks every plausible reading (webhook field names, event
names, machine result, recording URLs, whether the call lookup exists), and the adapter reads each one right.
Also what the page does say: E.164 only, fallback_url, machine detection Enable/Disable with no hang-up, and
call_uuid as the id of every later operation (TryVox's Make a Call page: Request Parameters, Response Fields,
Notes)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from campaigns.states import Outcome
from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator
from workers.callbacks.event_payload import event_payload
from workers.housekeeping.batch_lookup import ask_carrier
from workers.providers.calls import (
    AccountCredentials,
    CallbackUrls,
    EventKind,
    IncomingCallback,
    OutboundCall,
)
from workers.providers.errors import Rejected
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

KEY = "tvx_sk_test_readings"
# auth id -> the account's readings of what the page leaves open (simulator.config.Account, tryvox_*).
READINGS: dict[str, dict[str, str]] = {
    "tvx-seed": {},
    "tvx-camel": {"tryvox_webhook_fields": "camel", "tryvox_event_names": "plain",
                  "tryvox_machine_result": "flag", "tryvox_recordings": "url"},
    "tvx-plivo": {"tryvox_webhook_fields": "plivo", "tryvox_event_names": "none",
                  "tryvox_machine_result": "end_reason", "tryvox_recordings": "urls"},
    "tvx-plivo-form": {"tryvox_webhook_fields": "plivo", "callback_shape": "form",
                       "tryvox_machine_result": "flag", "tryvox_recordings": "urls"},
    "tvx-rich": {"callback_shape": "rich", "tryvox_event_names": "plain", "tryvox_recordings": "url"},
    "tvx-no-lookup": {"tryvox_lookup": "missing"},
}
CALLS_PER_ACCOUNT = 8
CONFIG = {
    "accounts": [{"provider": "tryvox", "auth_id": auth_id, "auth_token": KEY, "cps": 50, **readings}
                 for auth_id, readings in READINGS.items()],
    "outcomes": {"answered": 30, "busy": 15, "no_answer": 15, "failed": 10, "machine": 30,
                 "ring_time": [1, 2], "talk_time": [3, 4]},
}
KINDS = {"ring": EventKind.RING, "answer": EventKind.ANSWER, "hangup": EventKind.HANGUP}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=200, seed=19) as sim:
        yield sim


def creds(sim: RunningSimulator, auth_id: str) -> AccountCredentials:
    return AccountCredentials(7, "tryvox", auth_id, KEY, sim.base_url)


def incoming(received: ReceivedCallback) -> IncomingCallback:
    kind = KINDS[received.path.rsplit("/", 1)[-1]]
    form = received.headers["content-type"].startswith("application/x-www-form-urlencoded")
    return IncomingCallback(method="POST", url=f"https://dialer.test{received.path}",
                            headers=received.headers, body=received.body,
                            params=received.form() if form else {}, kind_hint=kind)


def place(sim: RunningSimulator, sink: CallbackSink, auth_id: str, count: int) -> list[str]:
    """`count` calls with machine detection enabled; their call_uuids, as the adapter kept them."""
    adapter = adapter_for("tryvox")
    urls = CallbackUrls(answer_url=sink.url(f"/{auth_id}/answer"), hangup_url=sink.url(f"/{auth_id}/hangup"),
                        ring_url=sink.url(f"/{auth_id}/ring"))
    placed = []
    with make_client() as client:
        for i in range(count):
            call = OutboundCall(caller_id="+14155551234", destinations=[f"+1415555{i:04d}"], callbacks=urls,
                                machine_detection="true")
            accepted = adapter.create_calls(client, creds(sim, auth_id), call)
            (one,) = accepted.calls
            assert one.call_uuid and one.call_uuid != one.request_uuid  # Response Fields: both kept, distinct
            placed.append(one.call_uuid)
    return placed


def expected(outcome: str, readings: dict[str, str]) -> Outcome:
    """What the webhooks of this reading let anyone know: a machine reads as answered when nothing reports
    it (the seed reading); every other outcome as it happened."""
    machine_told = readings.get("tryvox_machine_result", "none") != "none" or \
        readings.get("callback_shape") == "rich"
    if outcome == "machine" and not machine_told:
        return Outcome.ANSWERED
    return Outcome(outcome)


def test_every_webhook_reading_is_read_to_the_outcome_the_carrier_knows(
    sim: RunningSimulator, sink: CallbackSink
) -> None:
    placed = {auth_id: place(sim, sink, auth_id, CALLS_PER_ACCOUNT) for auth_id in READINGS}
    total = CALLS_PER_ACCOUNT * len(READINGS)
    got = sink.wait_for(lambda reqs: sum(r.path.endswith("/hangup") for r in reqs) >= total, timeout=30)
    ledger = {c["call_uuid"]: c for c in sim.ledger()["calls"]}
    adapter = adapter_for("tryvox")
    outcomes_seen: set[str] = set()
    for received in got:
        auth_id = received.path.split("/")[1]
        if auth_id not in READINGS:
            continue
        readings = READINGS[auth_id]
        event = adapter.parse_callback(incoming(received))
        assert event.call_uuid in placed[auth_id], (auth_id, received.body)
        call = ledger[event.call_uuid]
        if received.path.endswith("/hangup"):
            outcomes_seen.add(call["outcome"])
            assert event.is_final and event.outcome == expected(call["outcome"], readings), (auth_id, call)
            recorded = call["outcome"] in ("answered", "machine") and \
                readings.get("tryvox_recordings", "none") != "none"
            assert (event.recording_url is not None) == recorded, (auth_id, received.body)
            if recorded:  # kept where the results can reach it
                assert event.recording_url and event.recording_url.endswith(f"{call['call_uuid']}.mp3")
                stored = event_payload(event, dict(event.payload))
                assert stored["parsed"]["recording_url"] == event.recording_url
        elif received.path.endswith("/ring"):
            assert (event.kind, event.is_final) == (EventKind.RING, False), auth_id
        else:
            told = expected("machine", readings) == Outcome.MACHINE and call["machine"] \
                and readings.get("tryvox_machine_result") != "end_reason"
            assert event.kind == (EventKind.MACHINE if told else EventKind.ANSWER), (auth_id, received.body)
    assert {"answered", "machine"} <= outcomes_seen, outcomes_seen


def test_the_lookup_asks_by_call_uuid_in_every_field_reading_and_never_by_request_uuid(
    sim: RunningSimulator, sink: CallbackSink
) -> None:
    adapter = adapter_for("tryvox")
    for auth_id in ("tvx-seed", "tvx-camel", "tvx-plivo"):
        (call_uuid,) = place(sim, sink, auth_id, 1)
        sim.wait_idle(10)
        call = next(c for c in sim.ledger()["calls"] if c["call_uuid"] == call_uuid)
        with make_client() as client:
            event = adapter.fetch_call_status(client, creds(sim, auth_id), call["request_uuid"], call_uuid)
            assert event is not None and event.is_final and event.call_uuid == call_uuid, auth_id
            # Response Fields: the request uuid is not the call's id for later operations; the carrier does
            # not know it.
            calls = f"{sim.base_url}/v1/voice/accounts/{auth_id}/calls"
            bearer = {"Authorization": f"Bearer {KEY}"}
            by_request = client.get(f"{calls}/{call['request_uuid']}", headers=bearer)
            assert by_request.status_code == 404
    asked: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(record)
    with make_client(transport=transport) as client:
        assert adapter.fetch_call_status(client, creds(sim, "tvx-seed"), "request-only", None) is None
    assert asked == []  # an attempt known only by its request uuid is not looked up at all


def test_a_carrier_without_the_assumed_lookup_leaves_the_attempt_to_its_evidence(
    sim: RunningSimulator, sink: CallbackSink
) -> None:
    # The lookup endpoint is not on the page: the "missing" reading has none (404), and a carrier might also
    # answer 405. Either way the reaper learns nothing and the attempt waits for callbacks or its window.
    (call_uuid,) = place(sim, sink, "tvx-no-lookup", 1)
    with make_client() as client:
        answer = client.get(f"{sim.base_url}/v1/voice/accounts/tvx-no-lookup/calls/{call_uuid}",
                            headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 404
        event = ask_carrier(adapter_for("tryvox"), client, creds(sim, "tvx-no-lookup"), None, call_uuid, "t")
    assert event is None
    transport = httpx.MockTransport(lambda request: httpx.Response(405, text="method not allowed"))
    with make_client(transport=transport) as client:
        assert ask_carrier(adapter_for("tryvox"), client, creds(sim, "tvx-seed"), "r", "c", "t") is None


# --- what the page says --------------------------------------------------------------------------------
URLS = CallbackUrls(answer_url="https://cb.test/answer", hangup_url="https://cb.test/hangup")
ACCOUNT = AccountCredentials(7, "tryvox", "acc", KEY, "https://api.tryvox.test")


def sent(call: OutboundCall) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"request_uuid": str(uuid.uuid4()), "call_uuid": str(uuid.uuid4())})

    with make_client(transport=httpx.MockTransport(handler)) as client:
        adapter_for("tryvox").create_calls(client, ACCOUNT, call)
    return bodies


def test_tryvox_sends_the_campaigns_fallback_url() -> None:
    (body,) = sent(OutboundCall("+14155551234", ["+14155550001"], URLS,
                                fallback_url="https://customer.example/fallback"))
    assert body["fallback_url"] == "https://customer.example/fallback"  # Request Parameters: `fallback_url`


@pytest.mark.parametrize("destination", ["sip:alice@example.com", "SIPS:bob@example.com"])
def test_tryvox_refuses_a_sip_uri_before_sending(destination: str) -> None:
    with pytest.raises(Rejected, match=r"E\.164 numbers only \(page, Request Parameters: `to`, and Notes\)"):
        sent(OutboundCall("+14155551234", [destination], URLS))


def test_tryvox_refuses_hang_up_on_machine_and_declares_what_its_page_offers() -> None:
    with pytest.raises(Rejected, match="Enable/Disable"):
        sent(OutboundCall("+14155551234", ["+14155550001"], URLS, machine_detection="hangup"))
    support = adapter_for("tryvox").traits.options
    # Request Parameters: `machine_detection`: no result, no hang-up on the page
    assert support.machine_detection_modes == {"true"}
    assert support.destination_kinds == {"tel"}  # Request Parameters: `to`, and Notes
    assert "fallback_url" in support.supported  # Request Parameters: `fallback_url`
    assert not {"caller_name", "sip_headers", "send_digits", "machine_detection_time",
                "callback_retries"} & support.supported


def test_a_webhook_naming_only_its_call_uuid_is_read() -> None:
    body = json.dumps({"CallUUID": "c-9", "CallStatus": "completed", "Duration": "7"}).encode()
    event = adapter_for("tryvox").parse_callback(IncomingCallback(
        method="POST", url="https://dialer.test/cb", headers={}, body=body, params={},
        kind_hint=EventKind.HANGUP))
    assert (event.call_uuid, event.request_uuid, event.outcome) == ("c-9", None, Outcome.ANSWERED)
