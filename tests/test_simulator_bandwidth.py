"""Bandwidth contract: Basic auth, camelCase, 201 + Location, 429 with Retry-After, answer and disconnect
callbacks with the create request's username/password."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.sim_helpers import CallbackSink, RunningSimulator, start_simulator

ACCOUNT, PASSWORD, APP = "55555555", "api-password", "7fc9698a-b04a-468b-9e8f-91238c0d0086"
API_USER = "api-user"
CONFIG = {
    "accounts": [{"provider": "bandwidth", "auth_id": ACCOUNT, "auth_token": PASSWORD, "cps": 3,
                  "max_concurrent": 100, "application_id": APP, "api_username": API_USER}],
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 2], "talk_time": [3, 4]},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=200, seed=4) as sim:
        yield sim


def create(sim: RunningSimulator, body: dict[str, object], password: str = PASSWORD,
           user: str = API_USER) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/api/v2/accounts/{ACCOUNT}/calls", json=body, auth=(user, password))


def test_bandwidth_call_as_in_seed_and_its_callbacks(sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"from": "+15555551212", "to": "+15555551313", "answerUrl": sink.url("/bw-answer"),
            "applicationId": APP, "disconnectUrl": sink.url("/bw-disconnect"), "tag": "batch-42",
            "username": "cbuser", "password": "cbpass"}
    resp = create(sim, body)
    assert resp.status_code == 201
    data = resp.json()
    assert resp.headers["location"] == data["callUrl"] and data["callId"].startswith("c-")
    # The seed's example answer, key for key (Bandwidth's Create Call page, Example 1 of 1, 201 answer).
    assert set(data) == {"from", "to", "applicationId", "callId", "callUrl", "callTimeout", "answerUrl",
                         "answerMethod", "disconnectUrl", "disconnectMethod", "username", "password", "tag"}
    assert data["tag"] == "batch-42" and data["callTimeout"] == 30
    got = sink.wait_for(lambda reqs: sum(r.path == "/bw-disconnect" for r in reqs) >= 1)
    answer = next(r for r in got if r.path == "/bw-answer")
    disconnect = next(r for r in got if r.path == "/bw-disconnect")
    assert answer.json()["eventType"] == "answer" and answer.json()["tag"] == "batch-42"
    event = disconnect.json()
    assert event["eventType"] == "disconnect" and event["cause"] == "hangup"
    assert event["callId"] == data["callId"]
    assert event["answerTime"] and event["endTime"] and event["tag"] == "batch-42"
    expected = "Basic " + base64.b64encode(b"cbuser:cbpass").decode()
    assert disconnect.headers["authorization"] == expected == answer.headers["authorization"]
    state = httpx.get(data["callUrl"], auth=(API_USER, PASSWORD)).json()
    assert state["state"] == "disconnected" and state["disconnectCause"] == "hangup"


def test_bandwidth_errors_and_429_with_retry_after(sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.reset()
    ok = {"from": "+15555551212", "to": "+15555550001", "answerUrl": sink.url("/bw-answer"),
          "applicationId": APP}
    missing = create(sim, {k: v for k, v in ok.items() if k != "applicationId"})
    assert missing.status_code == 400 and missing.json()["type"] == "validation"
    assert create(sim, {**ok, "to": "5555550001"}).status_code == 400
    assert create(sim, {**ok, "callTimeout": 301}).status_code == 400
    assert create(sim, ok, password="wrong").status_code == 401
    assert create(sim, {**ok, "tag": "x" * 257}).status_code == 400  # seed: tag at most 256 characters
    assert create(sim, {**ok, "answerMethod": "PUT"}).status_code == 400  # seed: GET or POST
    # Bandwidth authenticates with an API user, never the account id (page, Basic Authentication).
    as_account = create(sim, ok, user=ACCOUNT)
    assert as_account.status_code == 401 and "account id" in as_account.json()["description"]
    codes = []
    for i in range(5):
        resp = create(sim, {**ok, "to": f"+1555555100{i}"})
        codes.append(resp.status_code)
        if resp.status_code == 429:
            description = "Account call creation rate limit exceeded"
            assert resp.json() == {"type": "error", "description": description}
            assert int(resp.headers["retry-after"]) >= 1
    assert codes[:3] == [201, 201, 201] and 429 in codes[3:]
    sim.configure({"accounts": {ACCOUNT: {"max_concurrent": 0}}})
    try:
        full = create(sim, {**ok, "to": "+15555552000"})
    finally:
        sim.configure({"accounts": {ACCOUNT: {"max_concurrent": 100}}})
    assert full.status_code == 429 and "concurrent call limit" in full.json()["description"]
    assert "retry-after" in full.headers


def test_bandwidth_without_the_call_api_reading_answers_404_to_get_and_update(sink: CallbackSink) -> None:
    # Get Call State and Update Call are not on the seed: one reading of the carrier has neither.
    config = {"accounts": [{**CONFIG["accounts"][0], "bandwidth_call_api": "missing"}],  # type: ignore[index]
              "outcomes": CONFIG["outcomes"]}
    with start_simulator(config, speed=200, seed=4) as bare:
        body: dict[str, object] = {"from": "+15555551212", "to": "+15555550002",
                                   "answerUrl": sink.url("/bw-answer"), "applicationId": APP}
        call_url = create(bare, body).json()["callUrl"]
        assert httpx.get(call_url, auth=(API_USER, PASSWORD)).status_code == 404
        assert httpx.post(call_url, json={"state": "completed"}, auth=(API_USER, PASSWORD)).status_code == 404
