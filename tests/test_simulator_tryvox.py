"""TryVox contract: Bearer auth, one E.164 destination, the seed's response and JSON webhooks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator

AUTH_ID, KEY = "your_auth_id", "tvx_sk_test_abc"
RICH_ID, FORM_ID = "tvx-rich", "tvx-form"
CONFIG = {
    "accounts": [{"provider": "tryvox", "auth_id": AUTH_ID, "auth_token": KEY, "cps": 2},
                 {"provider": "tryvox", "auth_id": RICH_ID, "auth_token": KEY, "cps": 20,
                  "callback_shape": "rich"},
                 {"provider": "tryvox", "auth_id": FORM_ID, "auth_token": KEY, "cps": 20,
                  "callback_shape": "form"}],
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 2], "talk_time": [3, 4]},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=200, seed=5) as sim:
        yield sim


def post(sim: RunningSimulator, body: dict[str, object], key: str = KEY, auth_id: str = AUTH_ID
         ) -> httpx.Response:
    return httpx.post(f"{sim.base_url}/v1/voice/accounts/{auth_id}/calls", json=body,
                      headers={"Authorization": f"Bearer {key}"})


def test_tryvox_call_as_in_seed_rings_answers_and_hangs_up(sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"from": "+14155551234", "to": "+14155556789", "answer_url": sink.url("/answer"),
            "answer_method": "POST", "ring_url": sink.url("/ringing"), "hangup_url": sink.url("/hangup"),
            "ring_timeout": 60, "time_limit": 3600, "machine_detection": "Enable"}
    resp = post(sim, body)
    assert resp.status_code == 201
    data = resp.json()
    assert set(data) == {"request_uuid", "call_uuid", "from", "to", "direction", "status", "created_at"}
    assert (data["status"], data["direction"], data["to"]) == ("ringing", "outbound", "+14155556789")
    got = sink.wait_for(lambda reqs: sum(r.json()["call_uuid"] == data["call_uuid"] for r in reqs) >= 3)
    events = {r.path: r.json() for r in got if r.json()["call_uuid"] == data["call_uuid"]}
    assert events["/ringing"]["event"] == "call.ringing" and events["/answer"]["status"] == "in-progress"
    hangup = events["/hangup"]
    assert hangup["event"] == "call.hangup" and hangup["status"] == "completed"
    # Seed Webhooks, Hangup URL: the hangup carries "duration, end reason"; nothing more is promised.
    assert set(hangup) == {"event", "request_uuid", "call_uuid", "from", "to", "direction", "status",
                           "duration", "end_reason"}
    assert hangup["request_uuid"] == data["request_uuid"]
    assert hangup["duration"] >= 3 and hangup["end_reason"] == "callee-hangup"
    record = httpx.get(f"{sim.base_url}/v1/voice/accounts/{AUTH_ID}/calls/{data['call_uuid']}",
                       headers={"Authorization": f"Bearer {KEY}"}).json()
    assert record["status"] == "completed" and record["duration"] == hangup["duration"]


def test_tryvox_rich_and_form_webhook_shapes(sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"from": "+14155551234", "to": "+14155556780", "answer_url": sink.url("/answer"),
            "hangup_url": sink.url("/shape-hangup")}
    rich = post(sim, body, auth_id=RICH_ID).json()["call_uuid"]
    form = post(sim, {**body, "to": "+14155556781"}, auth_id=FORM_ID).json()["call_uuid"]

    def hangup_of(call_uuid: str, reqs: list[ReceivedCallback]) -> ReceivedCallback | None:
        for r in reqs:
            fields = r.form() if r.headers["content-type"].startswith("application/x-www") else r.json()
            if r.path == "/shape-hangup" and fields["call_uuid"] == call_uuid:
                return r
        return None

    got = sink.wait_for(lambda reqs: bool(hangup_of(rich, reqs) and hangup_of(form, reqs)))
    rich_hangup = hangup_of(rich, got)
    form_hangup = hangup_of(form, got)
    assert rich_hangup is not None and form_hangup is not None
    assert rich_hangup.json()["answer_time"] and rich_hangup.json()["account_id"] == RICH_ID
    assert form_hangup.form()["status"] == "completed" and int(form_hangup.form()["duration"]) >= 3


def test_tryvox_errors(sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.reset()
    ok = {"from": "+14155551234", "to": "+14155550001", "answer_url": sink.url("/answer")}
    no_plus = post(sim, {**ok, "to": "14155556789"})
    assert no_plus.status_code == 400 and no_plus.json()["error"]["code"] == "invalid_request"
    assert post(sim, {**ok, "answer_url": None}).status_code == 400
    assert post(sim, ok, key="tvx_sk_test_wrong").status_code == 401
    codes = [post(sim, {**ok, "to": f"+1415555000{i}"}).status_code for i in range(4)]
    assert codes[:2] == [201, 201] and 429 in codes[2:]
    assert sim.stats()["accounts"][AUTH_ID]["max_in_1s_window"] <= 2
