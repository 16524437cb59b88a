"""VoIPbin contract: token auth, E.164 with + only, list of call objects, signed customer webhooks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import httpx
import pytest

from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator

TOKEN, SECRET = "vb-token", "vb-webhook-secret"
# The seed's first example (voipbin-calls-tutorial.txt l.14-36) with the answer action its troubleshooting
# section (l.587-590) requires at the start of outbound actions.
SEED_BODY = {
    "source": {"type": "tel", "target": "+15551234567"},
    "destinations": [{"type": "tel", "target": "+15559876543"}],
    "actions": [{"type": "answer"},
                {"type": "talk", "option": {"text": "hello. welcome to voipbin.", "language": "en-US"}}],
}


@pytest.fixture(scope="module")
def sink() -> Iterator[CallbackSink]:
    with CallbackSink() as sink:
        yield sink


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
