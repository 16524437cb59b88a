"""Where the Plivo and Vobiz pages are silent the simulator has one mode per plausible reading (issue 19), and
the adapters are checked against each: `hangup_on_ring` bounding the ringing or the whole call, a Vobiz bulk
answered with one request id or a list, Vobiz V3 over the URL with or without its query, the machine
parameter spelt either way, and Plivo callback retries read from the URL's fragment or its query. Also: no
ring limit of the simulator's own, machine hang-up, SIP headers echoed, Vobiz's destination count."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.polling import wait_for
from tests.sim_helpers import CallbackSink, ReceivedCallback, RunningSimulator, start_simulator
from workers.providers.calls import (
    AccountCredentials,
    CallbackUrls,
    EventKind,
    IncomingCallback,
    OutboundCall,
)
from workers.providers.http import make_client
from workers.providers.plivo import with_callback_retries
from workers.providers.registry import adapter_for

SPEED = 20.0
TOKEN = "tok"
MODES: dict[str, dict[str, Any]] = {
    "VZCALL": {"provider": "vobiz"},  # every default: hangup_on_ring bounds ring + talk, one bulk id, path
    "VZRING": {"provider": "vobiz", "hangup_on_ring_reading": "ring"},
    "VZFIRST": {"provider": "vobiz", "bulk_request_uuid": "first"},
    "VZLIST": {"provider": "vobiz", "bulk_request_uuid": "list"},
    "VZQUERY": {"provider": "vobiz", "vobiz_signature_url": "query"},
    "MAPLIVODEFAULT": {"provider": "plivo"},
    "MAPLIVOLOWER": {"provider": "plivo", "machine_field": "machine"},
    "MAPLIVOQUERY": {"provider": "plivo", "callback_retry_form": "query"},
    "MAPLIVOBROKE": {"provider": "plivo", "credit": 0},
}
OUTCOMES = ("answered", "busy", "no_answer", "failed", "machine")


def only(outcome: str, **times: Any) -> dict[str, Any]:
    return {**{name: 0 for name in OUTCOMES}, outcome: 100, "ring_time": [1, 1.5], "talk_time": [30, 31],
            **times}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    accounts = [{"auth_id": auth_id, "auth_token": TOKEN, "cps": 50, **mode}
                for auth_id, mode in MODES.items()]
    with start_simulator({"accounts": accounts, "outcomes": only("answered")}, speed=SPEED, seed=19) as sim:
        yield sim


def post(sim: RunningSimulator, auth_id: str, body: dict[str, Any]) -> httpx.Response:
    if MODES[auth_id]["provider"] == "plivo":
        return httpx.post(f"{sim.base_url}/v1/Account/{auth_id}/Call/", json=body, auth=(auth_id, TOKEN))
    headers = {"X-Auth-ID": auth_id, "X-Auth-Token": TOKEN}
    return httpx.post(f"{sim.base_url}/api/v1/Account/{auth_id}/Call/", json=body, headers=headers)


def call_body(sink: CallbackSink, to: str, path: str = "/h", **fields: Any) -> dict[str, Any]:
    return {"from": "14155550100", "to": to, "answer_url": sink.url("/a"), "ring_url": sink.url("/r"),
            "hangup_url": sink.url(path), **fields}


def ended(sim: RunningSimulator, numbers: set[str], timeout: float = 15) -> dict[str, dict[str, Any]]:
    def over() -> dict[str, dict[str, Any]] | None:
        calls = {c["destination"]: c for c in sim.ledger()["calls"] if c["destination"] in numbers}
        return calls if len(calls) == len(numbers) and all(c["status"] == "completed"
                                                          for c in calls.values()) else None

    return wait_for(over, timeout, f"calls to {sorted(numbers)} over")


def rang_s(call: dict[str, Any]) -> float:
    """Carrier seconds from ringing to hangup of an unanswered call."""
    return (call["hangup_at"] - call["ringing_at"]) * SPEED


def test_a_vobiz_call_given_no_ring_bound_is_not_ended_at_a_limit_of_the_simulators_own(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": only("no_answer")})
    response = post(sim, "VZCALL", call_body(sink, "12125551001"))
    assert response.status_code == 200
    time.sleep(75 / SPEED)  # 75 carrier seconds: past the 60 s the simulator used to end every call at
    (call,) = [c for c in sim.ledger()["calls"] if c["destination"] == "12125551001"]
    assert call["status"] == "ringing", "a call asked for with no ring limit still rings"
    base = f"{sim.base_url}/api/v1/Account/VZCALL/Call/"
    headers = {"X-Auth-ID": "VZCALL", "X-Auth-Token": TOKEN}
    hung_up = httpx.delete(f"{base}{call['call_uuid']}/", headers=headers)
    assert hung_up.status_code == 204


@pytest.mark.parametrize(("auth_id", "talk_cut"), [("VZCALL", True), ("VZRING", False)])
def test_hangup_on_ring_bounds_the_talk_only_in_the_whole_call_reading(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str, talk_cut: bool) -> None:
    number = "1212555110" + str(int(talk_cut))
    sim.configure({"outcomes": only("answered")})
    assert post(sim, auth_id, call_body(sink, number, hangup_on_ring=10, time_limit=100)).status_code == 200
    call = ended(sim, {number})[number]
    assert call["outcome"] == "answered"
    assert (call["duration"] <= 10) is talk_cut, call  # talk drawn 30-31 s


@pytest.mark.parametrize("auth_id", ["VZCALL", "VZRING"])
def test_hangup_on_ring_ends_an_unanswered_call_in_both_readings(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str) -> None:
    number = "121255512" + str(list(MODES).index(auth_id)).zfill(2)
    sim.configure({"outcomes": only("no_answer")})
    assert post(sim, auth_id, call_body(sink, number, hangup_on_ring=10)).status_code == 200
    call = ended(sim, {number})[number]
    assert 9 <= rang_s(call) <= 14, call


def adapter_call(sim: RunningSimulator, sink: CallbackSink, auth_id: str, number: str,
                 options: dict[str, Any] | None = None) -> None:
    account = AccountCredentials(7, "vobiz", auth_id, TOKEN, sim.base_url, options=options or {})
    call = OutboundCall(caller_id="+14155550100", destinations=[number], ring_timeout=10, time_limit=100,
                        callbacks=CallbackUrls(answer_url=sink.url("/a"), hangup_url=sink.url("/h")))
    with make_client() as client:
        adapter_for("vobiz").create_calls(client, account, call)


@pytest.mark.parametrize(("auth_id", "options"), [("VZCALL", None), ("VZRING", {"hangup_on_ring": "ring"})])
def test_the_vobiz_adapter_never_cuts_an_answered_call_short_under_either_reading(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str, options: dict[str, Any] | None) -> None:
    number = "121255513" + str(list(MODES).index(auth_id)).zfill(2)
    sim.configure({"outcomes": only("answered")})
    adapter_call(sim, sink, auth_id, number, options)
    call = ended(sim, {number})[number]
    assert call["outcome"] == "answered" and call["duration"] >= 30, call


def test_the_vobiz_adapter_reading_ringing_only_rings_no_longer_than_the_ring_timeout(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": only("no_answer")})
    adapter_call(sim, sink, "VZRING", "12125551401", {"hangup_on_ring": "ring"})
    call = ended(sim, {"12125551401"})["12125551401"]
    assert rang_s(call) <= 14, call  # ring timeout 10 (the whole-call reading: workers.housekeeping)


def bulk_callbacks(sink: CallbackSink, numbers: list[str]) -> dict[str, dict[str, str]]:
    def mine(reqs: list[ReceivedCallback]) -> dict[str, dict[str, str]]:
        return {r.form()["To"]: r.form() for r in reqs if r.path == "/bulk" and r.form().get("To") in numbers}

    return mine(sink.wait_for(lambda reqs: len(mine(reqs)) == len(numbers)))


@pytest.mark.parametrize("auth_id", ["VZCALL", "VZFIRST", "VZLIST"])
def test_a_vobiz_bulk_answer_names_the_destinations_ids_only_in_the_list_reading(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str) -> None:
    numbers = [f"1212555{1500 + 10 * list(MODES).index(auth_id) + i}" for i in range(3)]
    sim.configure({"outcomes": only("busy")})
    response = post(sim, auth_id, call_body(sink, "<".join(numbers), "/bulk"))
    assert response.status_code == 200 and response.json()["message"] == "Calls fired"
    answer = response.json()["request_uuid"]
    hangups = bulk_callbacks(sink, numbers)
    own = {form["RequestUUID"] for form in hangups.values()}
    assert len(own) == 3 and all(form["CallUUID"] == form["RequestUUID"] for form in hangups.values())
    headers = {"X-Auth-ID": auth_id, "X-Auth-Token": TOKEN}
    base = f"{sim.base_url}/api/v1/Account/{auth_id}/Call/"
    if auth_id == "VZLIST":
        assert isinstance(answer, list) and set(answer) == own
    elif auth_id == "VZFIRST":
        assert isinstance(answer, str) and answer in own
        assert httpx.get(f"{base}{answer}/", headers=headers).json()["to_number"] in numbers
    else:  # page, Success Response (200 OK): one string, per-destination ids only in the callbacks
        assert isinstance(answer, str) and answer not in own
        assert httpx.get(f"{base}{answer}/", headers=headers).status_code == 404


def test_vobiz_v3_over_the_url_with_its_query_passes_the_adapter(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": only("busy")})
    url = sink.url("/signed?campaign=7")
    assert post(sim, "VZQUERY", {**call_body(sink, "12125551601"), "hangup_url": url}).status_code == 200
    (hangup,) = sink.wait_for(lambda reqs: any(r.path == "/signed" for r in reqs))[-1:]
    account = AccountCredentials(8, "vobiz", "VZQUERY", TOKEN, sim.base_url)
    callback = IncomingCallback(method="POST", url=url, headers=hangup.headers, body=hangup.body, params={},
                                kind_hint=EventKind.HANGUP)
    assert adapter_for("vobiz").authenticate(account, callback, None) is not None
    other = IncomingCallback(method="POST", url=sink.url("/signed?campaign=8"), headers=hangup.headers,
                             body=hangup.body, params={}, kind_hint=EventKind.HANGUP)
    assert adapter_for("vobiz").authenticate(account, other, None) is None, "the query is what was signed"


@pytest.mark.parametrize(("auth_id", "field"), [("MAPLIVODEFAULT", "Machine"), ("MAPLIVOLOWER", "machine")])
def test_machine_hangup_ends_the_call_and_reports_machine_detection_under_either_spelling(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str, field: str) -> None:
    number = "121255517" + str(list(MODES).index(auth_id)).zfill(2)
    sim.configure({"outcomes": only("machine")})
    body = call_body(sink, number, f"/md-{field}", machine_detection="hangup", machine_detection_time=2000)
    assert post(sim, auth_id, body).status_code == 201
    call = ended(sim, {number})[number]
    assert call["machine"] and call["duration"] <= 2, "hung up once detection decided (talk drawn 30 s)"
    (hangup,) = [r for r in sink.wait_for(lambda reqs: any(r.path == f"/md-{field}" for r in reqs))
                 if r.path == f"/md-{field}"]
    assert hangup.form()[field] == "machine_detection" and ({"Machine", "machine"} - {field}).isdisjoint(
        hangup.form())
    event = adapter_for("plivo").parse_callback(IncomingCallback(
        method="POST", url=sink.url(hangup.path), headers=hangup.headers, body=hangup.body, params={},
        kind_hint=EventKind.HANGUP))
    assert event.outcome == "machine"


@pytest.mark.parametrize(("auth_id", "url_form", "attempts"), [
    ("MAPLIVODEFAULT", "adapter", 5), ("MAPLIVOQUERY", "adapter", 5),
    ("MAPLIVOQUERY", "fragment only", 3),  # the simulator's default policy: 3 attempts
])
def test_plivo_callback_retries_are_honoured_where_each_reading_puts_them(
        sim: RunningSimulator, sink: CallbackSink, auth_id: str, url_form: str, attempts: int) -> None:
    path = f"/retry-{auth_id}-{url_form.replace(' ', '-')}"
    sink.statuses[path] = [500] * 10
    url = with_callback_retries(sink.url(path), 4)
    if url_form == "fragment only":
        url = sink.url(path) + "#rc=4"
    sim.configure({"outcomes": only("busy")})
    number = f"12125551{800 + len(sink.statuses)}"
    assert post(sim, auth_id, {**call_body(sink, number), "hangup_url": url}).status_code == 201
    ended(sim, {number})
    sink.wait_for(lambda reqs: sum(r.path == path for r in reqs) >= attempts, timeout=20)
    sim.wait_idle(20)
    assert sum(r.path == path for r in sink.snapshot()) == attempts


def test_plivo_echoes_sip_headers_on_every_callback_and_refuses_malformed_ones(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    sim.configure({"outcomes": only("answered", talk_time=[1, 2])})
    body = call_body(sink, "12125551901", "/sip-h", sip_headers="Campaign=42,Site=A1")
    request_uuid = post(sim, "MAPLIVODEFAULT", body).json()["request_uuid"]
    got = sink.wait_for(lambda reqs: sum(r.form().get("RequestUUID") == request_uuid for r in reqs) >= 3)
    mine = [r.form() for r in got if r.form().get("RequestUUID") == request_uuid]
    assert {r["Event"] for r in mine} == {"Ring", "StartApp", "Hangup"}
    assert all(r["X-PH-Campaign"] == "42" and r["X-PH-Site"] == "A1" for r in mine)
    bad = call_body(sink, "12125551902", sip_headers="Campaign=4 2")
    assert post(sim, "MAPLIVODEFAULT", bad).status_code == 400


def test_vobiz_counts_every_destination_towards_its_thousand_plivo_only_unique_ones(
        sim: RunningSimulator, sink: CallbackSink) -> None:
    repeated = "<".join(f"1212556{i % 500:04d}" for i in range(1001))
    vobiz = post(sim, "VZCALL", call_body(sink, repeated))
    assert vobiz.status_code == 400 and "1000 destinations" in vobiz.text
    plivo = post(sim, "MAPLIVOBROKE", call_body(sink, repeated))
    assert plivo.status_code == 402, "500 unique destinations pass Plivo's limit (then: no credit)"
