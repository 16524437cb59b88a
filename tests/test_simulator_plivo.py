"""Plivo and Vobiz contract: the simulator answers requests shaped as in their seeds like the real APIs,
and its callbacks carry their fields and signatures (verified here with an independent implementation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from simulator import signing
from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator

PLIVO_ID, PLIVO_TOKEN = "MAPLIVOSIM0000000001", "plivo-secret"
VOBIZ_ID, VOBIZ_TOKEN = "MA_VOBIZSIM1", "vobiz-secret"
PLIVO_RICH_ID = "MAPLIVORICH000000001"
# The seed's hangup_url parameters (Plivo's Make a call page, hangup_url parameters), plus Machine when
# detection is on.
SEED_HANGUP_FIELDS = {"From", "To", "RequestUUID", "ALegRequestUUID", "CallUUID", "Direction", "ALegUUID",
                      "Event", "stir_verification", "CallStatus", "StartTime", "AnswerTime", "SessionStart",
                      "EndTime", "STIRAttestation"}
FAST = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
        "ring_time": [1, 2], "talk_time": [3, 4]}
CONFIG = {
    "accounts": [
        {"provider": "plivo", "auth_id": PLIVO_ID, "auth_token": PLIVO_TOKEN, "cps": 50},
        {"provider": "plivo", "auth_id": PLIVO_RICH_ID, "auth_token": PLIVO_TOKEN, "cps": 50,
         "callback_shape": "rich", "time_zone": "Asia/Kolkata"},
        {"provider": "plivo", "auth_id": "MAPLIVOSLOW000000001", "auth_token": "t", "cps": 1},
        {"provider": "plivo", "auth_id": "MAPLIVOBROKE00000001", "auth_token": "t", "credit": 1},
        {"provider": "vobiz", "auth_id": VOBIZ_ID, "auth_token": VOBIZ_TOKEN, "cps": 50},
    ],
    "outcomes": FAST,
}


def independent_plivo_v3(url: str, params: dict[str, str], nonce: str, token: str) -> str:
    """Plivo V3 for a POST to a URL without query: base?KeyValue...KeyValue.nonce (PROVIDERS.md)."""
    parts = urlsplit(url)
    message = f"{parts.scheme}://{parts.netloc}{parts.path}?" + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(token.encode(), f"{message}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def independent_vobiz_v3(url: str, nonce: str, token: str) -> str:
    parts = urlsplit(url)
    message = f"{parts.scheme}://{parts.netloc}{parts.path}.{nonce}"
    return base64.b64encode(hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()).decode()


def test_plivo_v3_worked_example_vector() -> None:
    params = {"CallUUID": "abc", "Duration": "5"}
    expected = "HzUMfXj/9bDOWw0fiPVmcFE9LcjST0IAxzT/S8rGK8o="
    assert independent_plivo_v3("https://x.com/hangup", params, "12345", "my_auth_token") == expected
    url = "https://x.com/hangup"
    assert signing.plivo_v3_string("POST", url, params) == "https://x.com/hangup?CallUUIDabcDuration5"
    assert signing.plivo_v3_signature("POST", url, params, "12345", "my_auth_token") == expected
    v2 = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    assert signing.plivo_v2_signature("https://answer.url", "12345", "my_auth_token") == v2


def test_plivo_v3_signs_query_then_params() -> None:
    got = signing.plivo_v3_string("POST", "https://x.com/h?b=2&a=1#ct=2000", {"Z": "1", "A": "2"})
    assert got == "https://x.com/h?a=1&b=2.A2Z1"
    assert signing.plivo_v3_string("GET", "https://x.com/h?b=2", {"A": "2"}) == "https://x.com/h?A=2&b=2"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=200, seed=11) as sim:
        yield sim


def plivo_post(sim: RunningSimulator, body: dict[str, str], *, auth_id: str = PLIVO_ID,
               token: str = PLIVO_TOKEN, path_id: str | None = None) -> httpx.Response:
    url = f"{sim.base_url}/v1/Account/{path_id or auth_id}/Call/"
    return httpx.post(url, json=body, auth=(auth_id, token))


def callbacks_for(sink: CallbackSink, request_uuid: str, n: int) -> list[ReceivedCallback]:
    def mine(reqs: list[ReceivedCallback]) -> list[ReceivedCallback]:
        return [r for r in reqs if r.form().get("RequestUUID") == request_uuid]

    return mine(sink.wait_for(lambda reqs: len(mine(reqs)) >= n))


def test_plivo_single_call_is_fired_and_reported_with_signed_form_callbacks(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"to": "+12025551111", "from": "+12025550000", "answer_url": sink.url("/answer"),
            "ring_url": sink.url("/ring"), "hangup_url": sink.url("/hangup")}
    resp = plivo_post(sim, body)
    assert resp.status_code == 201
    data = resp.json()
    assert data["message"] == "call fired" and isinstance(data["request_uuid"], str) and data["api_id"]
    got = {r.path: r for r in callbacks_for(sink, data["request_uuid"], 3)}
    assert set(got) == {"/ring", "/answer", "/hangup"}
    ring, answer, hangup = got["/ring"].form(), got["/answer"].form(), got["/hangup"].form()
    assert (ring["Event"], ring["CallStatus"]) == ("Ring", "ringing")
    assert (answer["Event"], answer["CallStatus"]) == ("StartApp", "in-progress")
    assert hangup["Event"] == "Hangup" and hangup["CallStatus"] == "completed"
    assert set(hangup) == SEED_HANGUP_FIELDS, "the hangup carries exactly the seed's fields"
    assert hangup["To"] == "+12025551111" and hangup["From"] == "+12025550000"
    assert hangup["CallUUID"] != hangup["RequestUUID"] and hangup["AnswerTime"] and hangup["EndTime"]
    for cb in got.values():
        assert cb.headers["content-type"] == "application/x-www-form-urlencoded"
        nonce = cb.headers["x-plivo-signature-v3-nonce"]
        expected = independent_plivo_v3(sink.url(cb.path), cb.form(), nonce, PLIVO_TOKEN)
        assert cb.headers["x-plivo-signature-v3"] == expected


def test_plivo_rich_shape_adds_causes_and_durations_in_the_console_zone(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"to": "+12025551112", "from": "+12025550000", "answer_url": sink.url("/answer"),
            "hangup_url": sink.url("/rich-hangup")}
    resp = plivo_post(sim, body, auth_id=PLIVO_RICH_ID)
    assert resp.status_code == 201
    got = callbacks_for(sink, resp.json()["request_uuid"], 2)
    hangup = next(r.form() for r in got if r.path == "/rich-hangup")
    assert hangup["HangupCauseName"] == "Normal Hangup" and hangup["HangupCauseCode"] == "4000"
    assert int(hangup["Duration"]) >= 3 and hangup["BillDuration"] == "60"
    # Kolkata is UTC+05:30: the console-zone EndTime is 5.5 h ahead of SessionStart's UTC clock.
    end = datetime.fromisoformat(hangup["EndTime"]).replace(tzinfo=ZoneInfo("Asia/Kolkata"))
    session = datetime.fromisoformat(hangup["SessionStart"][:19]).replace(tzinfo=UTC)
    assert timedelta(0) <= end - session < timedelta(minutes=1)


def test_plivo_refuses_what_its_seed_does_not_allow(sim: RunningSimulator, sink: CallbackSink) -> None:
    ok = {"to": "+12025557001", "from": "+12025550000", "answer_url": sink.url("/answer")}
    for wrong in ({"machine_detection": "false"}, {"machine_detection_time": 1999},
                  {"caller_name": "x" * 51}, {"time_limit": 0}, {"hangup_on_ring": -1},
                  {"to": "+12025557002<not-a-number"}):
        assert plivo_post(sim, {**ok, **wrong}).status_code == 400, wrong


def test_plivo_bulk_form_request_fires_unique_destinations_in_no_order(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    to = "+12025552001<+12025552002<+12025552003<+12025552001"
    resp = httpx.post(f"{sim.base_url}/v1/Account/{PLIVO_ID}/Call/", auth=(PLIVO_ID, PLIVO_TOKEN),
                      data={"to": to, "from": "12025550000", "answer_url": sink.url("/answer"),
                            "hangup_url": sink.url("/bulk-hangup")})
    assert resp.status_code == 201
    data = resp.json()
    assert data["message"] == "calls fired" and len(set(data["request_uuid"])) == 3
    hangups = sink.wait_for(lambda reqs: sum(r.path == "/bulk-hangup" for r in reqs) >= 3)
    by_to = {r.form()["To"]: r.form()["RequestUUID"] for r in hangups if r.path == "/bulk-hangup"}
    assert set(by_to) == {"+12025552001", "+12025552002", "+12025552003"}
    assert set(by_to.values()) == set(data["request_uuid"])


def test_plivo_errors_have_plivo_shape_and_status(sim: RunningSimulator, sink: CallbackSink) -> None:
    ok = {"to": "+12025553001", "from": "+12025550000", "answer_url": sink.url("/answer")}
    missing = plivo_post(sim, {"to": "+12025553001", "from": "+12025550000"})
    assert missing.status_code == 400 and set(missing.json()) == {"api_id", "error"}
    too_many = "<".join(f"+1202555{i:04d}" for i in range(1001))
    assert plivo_post(sim, {**ok, "to": too_many}).status_code == 400
    assert plivo_post(sim, {**ok, "to": "not-a-number"}).status_code == 400
    assert plivo_post(sim, ok, token="wrong").status_code == 401
    assert plivo_post(sim, ok, path_id="MAOTHER0000000000000").status_code == 404
    broke = dict(auth_id="MAPLIVOBROKE00000001", token="t")
    assert plivo_post(sim, ok, **broke).status_code == 201
    payment = plivo_post(sim, {**ok, "to": "+12025553002"}, **broke)
    assert payment.status_code == 402 and "error" in payment.json()


def test_plivo_429_past_cps_without_retry_after(sim: RunningSimulator, sink: CallbackSink) -> None:
    slow = dict(auth_id="MAPLIVOSLOW000000001", token="t")
    body = {"to": "+12025554001", "from": "+12025550000", "answer_url": sink.url("/answer")}
    assert plivo_post(sim, body, **slow).status_code == 201
    throttled = plivo_post(sim, {**body, "to": "+12025554002"}, **slow)
    assert throttled.status_code == 429 and "retry-after" not in throttled.headers
    assert set(throttled.json()) == {"api_id", "error"}
    account = sim.stats()["accounts"]["MAPLIVOSLOW000000001"]
    assert account["rejected_cps"] >= 1 and account["max_in_1s_window"] == 1


def test_plivo_call_lookup_by_call_uuid_and_request_uuid(sim: RunningSimulator, sink: CallbackSink) -> None:
    body = {"to": "+12025555001", "from": "+12025550000", "answer_url": sink.url("/answer"),
            "hangup_url": sink.url("/lookup-hangup")}
    request_uuid = plivo_post(sim, body).json()["request_uuid"]
    hangup = callbacks_for(sink, request_uuid, 1)[0].form()
    base = f"{sim.base_url}/v1/Account/{PLIVO_ID}/Call/"
    by_call = httpx.get(f"{base}{hangup['CallUUID']}/", auth=(PLIVO_ID, PLIVO_TOKEN)).json()
    by_request = httpx.get(f"{base}{request_uuid}/", auth=(PLIVO_ID, PLIVO_TOKEN))
    assert by_call["call_uuid"] == hangup["CallUUID"]
    assert by_request.status_code == 404, "Plivo's Call retrieve takes the call uuid, not the request uuid"
    assert by_call["call_status"] == "completed" and by_call["to_number"] == "+12025555001"
    listed = httpx.get(base, params={"request_uuid": request_uuid}, auth=(PLIVO_ID, PLIVO_TOKEN)).json()
    assert [o["request_uuid"] for o in listed["objects"]] == [request_uuid]
    live = httpx.get(f"{base}{hangup['CallUUID']}/", params={"status": "live"}, auth=(PLIVO_ID, PLIVO_TOKEN))
    assert live.status_code == 404
    assert httpx.get(f"{base}nope/", auth=(PLIVO_ID, PLIVO_TOKEN)).status_code == 404


def test_plivo_machine_detection_reports_machine(sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": {**FAST, "answered": 0, "machine": 100}})
    try:
        body = {"to": "+12025556001", "from": "+12025550000", "answer_url": sink.url("/answer"),
                "hangup_url": sink.url("/md-hangup"), "machine_detection": "true"}
        request_uuid = plivo_post(sim, body).json()["request_uuid"]
        got = callbacks_for(sink, request_uuid, 2)
    finally:
        sim.configure({"outcomes": FAST})
    hangup = next(r.form() for r in got if r.path == "/md-hangup")
    assert hangup["Machine"] == "true" and hangup["CallStatus"] == "completed"


def vobiz_post(sim: RunningSimulator, path: str, body: dict[str, str], token: str = VOBIZ_TOKEN,
               ) -> httpx.Response:
    headers = {"X-Auth-ID": VOBIZ_ID, "X-Auth-Token": token}
    return httpx.post(f"{sim.base_url}{path}", json=body, headers=headers)


def test_vobiz_paths_auth_and_signed_callbacks(sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": {**FAST, "answered": 0, "no_answer": 100}})
    body = {"to": "14157654321", "from": "14157654322", "answer_url": sink.url("/v-answer"),
            "ring_url": sink.url("/v-ring"), "hangup_url": sink.url("/v-hangup?campaign=7"),
            "hangup_on_ring": 2}
    path = f"/api/v1/Account/{VOBIZ_ID}/Call/"
    try:
        assert vobiz_post(sim, path.replace("Account", "account"), body).status_code == 401
        assert vobiz_post(sim, path.rstrip("/"), body).status_code == 404
        assert vobiz_post(sim, path.replace(VOBIZ_ID, "MA_UNKNOWN"), body).status_code == 404
        assert vobiz_post(sim, path, body, token="wrong").status_code == 401
        resp = vobiz_post(sim, path, body)
        assert resp.status_code == 200 and resp.json()["message"] == "Call fired"
        got = callbacks_for(sink, resp.json()["request_uuid"], 2)
    finally:
        sim.configure({"outcomes": FAST})
    hangup = next(r for r in got if r.path == "/v-hangup")
    form = hangup.form()
    # Vobiz page, Parameters Sent to hangup_url: CallStatus is always "completed"; unanswered shows as no
    # AnswerTime.
    assert form["CallStatus"] == "completed" and "AnswerTime" not in form and "HangupCause" not in form
    assert set(form) == SEED_HANGUP_FIELDS - {"AnswerTime"}
    ring = next(r.form() for r in got if r.path == "/v-ring")
    # Vobiz page, Parameters Sent to ring_url
    assert set(ring) == {"From", "To", "RequestUUID", "ALegRequestUUID", "CallUUID", "Direction", "Event",
                         "CallStatus", "SessionStart", "STIRAttestation"}
    assert form["CallUUID"] == form["RequestUUID"] == resp.json()["request_uuid"]
    for cb in got:
        nonce = cb.headers["x-vobiz-signature-v3-nonce"]
        expected = independent_vobiz_v3(sink.url(cb.path), nonce, VOBIZ_TOKEN)
        assert cb.headers["x-vobiz-signature-v3"] == expected
