"""Timed per-account faults of the simulator (issue 23): an account answers 401, 402, 5xx or placed-but-5xx
only inside its window, in its provider's own error shape, while another account of the same simulator
keeps working; "refused" closes the whole listener for its window; bad schedules are 400 naming the field."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from simulator.config import ConfigError, apply_patch, load_config
from tests.sim_helpers import CallbackSink, RunningSimulator, start_simulator

ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAPLIVO0000000000000", "auth_token": "plivo-token"},
    {"provider": "vobiz", "auth_id": "MA_VOBIZ0001", "auth_token": "vobiz-token"},
    {"provider": "tryvox", "auth_id": "tryvox-account", "auth_token": "tvx-key"},
    {"provider": "voipbin", "auth_id": "voipbin-customer", "auth_token": "voipbin-token"},
    {"provider": "bandwidth", "auth_id": "5555555", "auth_token": "bw-password", "api_username": "bw-user"},
    {"provider": "tryvox", "auth_id": "other", "auth_token": "other-key"},  # never scheduled a fault
]
for _account in ACCOUNTS:
    _account.update(cps=1000, max_concurrent=1000)
CONFIG: dict[str, Any] = {
    "accounts": ACCOUNTS,
    "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                 "ring_time": [1, 1], "talk_time": [1, 1]},
}
PROVIDER_ACCOUNTS = [a["auth_id"] for a in ACCOUNTS[:5]]
WINDOW = 1.0  # seconds each fault lasts: real time whatever --speed


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(CONFIG, speed=20, seed=5) as sim:
        yield sim


@pytest.fixture
def client(sim: RunningSimulator) -> Iterator[httpx.Client]:
    sim.clear_faults()
    sim.reset()  # each test counts its own answers
    with httpx.Client(base_url=sim.base_url, timeout=5.0) as client:
        yield client
    sim.clear_faults()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def create(client: httpx.Client, auth_id: str, to: str, *, token: str | None = None,
           hangup_url: str = "http://127.0.0.1:9/h") -> httpx.Response:
    """A valid create request for one destination to `auth_id`, in its provider's words (`token`: other
    credentials than the account's)."""
    account = next(a for a in ACCOUNTS if a["auth_id"] == auth_id)
    key = token or account["auth_token"]
    caller, answer = "+14155550000", "http://127.0.0.1:9/a"
    provider = account["provider"]
    if provider == "plivo":
        return client.post(f"/v1/Account/{auth_id}/Call/", headers=_basic(auth_id, key),
                           json={"from": caller, "to": to, "answer_url": answer, "hangup_url": hangup_url})
    if provider == "vobiz":
        headers = {"X-Auth-ID": auth_id, "X-Auth-Token": key}
        return client.post(f"/api/v1/Account/{auth_id}/Call/", headers=headers,
                           json={"from": caller, "to": to, "answer_url": answer, "hangup_url": hangup_url})
    if provider == "tryvox":
        return client.post(f"/v1/voice/accounts/{auth_id}/calls", headers={"Authorization": f"Bearer {key}"},
                           json={"from": caller, "to": to, "answer_url": answer, "hangup_url": hangup_url})
    if provider == "voipbin":
        return client.post("/v1.0/calls", params={"token": key}, json={
            "source": {"type": "tel", "target": caller}, "destinations": [{"type": "tel", "target": to}],
            "actions": [{"type": "answer"}]})
    return client.post(f"/api/v2/accounts/{auth_id}/calls", headers=_basic(account["api_username"], key),
                       json={"from": caller, "to": to, "applicationId": "app", "answerUrl": answer})


def shape(response: httpx.Response) -> tuple[int, Any]:
    """Status and body of an error answer without its per-request id (Plivo's api_id)."""
    body = response.json()
    if isinstance(body, dict):
        body.pop("api_id", None)
    return response.status_code, body


def wait_until(instant: float) -> None:
    """Sleep until time.monotonic() reaches `instant` (the simulator's clock on this host is the same)."""
    time.sleep(max(0.0, instant - time.monotonic()))


def schedule(sim: RunningSimulator, fault: str, accounts: list[str], start_in: float = 0.6,
             ) -> tuple[float, float]:
    """Schedule `fault` for `accounts` in one window; its (start, end) on the monotonic clock."""
    listing = sim.schedule_faults([{"account": a, "fault": fault, "start_in": start_in, "seconds": WINDOW}
                                   for a in accounts])
    window = {(f["start"], f["end"]) for f in listing["faults"]}
    assert len(window) == 1
    return window.pop()


def phases(sim: RunningSimulator, fault: str, accounts: list[str],
           check: Callable[[str], None]) -> None:
    """Run `check("before" | "during" | "after")` around one window of `fault` for `accounts`."""
    start, end = schedule(sim, fault, accounts)
    check("before")
    assert time.monotonic() < start, "the checks before the window ran into it"
    wait_until(start + 0.05)
    check("during")
    assert time.monotonic() < end - 0.05, "the checks inside the window ran past its end"
    wait_until(end + 0.05)
    check("after")


def placed(sim: RunningSimulator, destination: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["destination"] == destination]


def test_401_answers_as_bad_credentials_do_in_each_providers_shape_only_in_its_window(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    bad_credentials = {a: shape(create(client, a, "+14155550001", token="wrong")) for a in PROVIDER_ACCOUNTS}
    assert {status for status, _ in bad_credentials.values()} == {401}
    earlier = create(client, "tryvox-account", "+14155550002").json()["call_uuid"]
    seen: dict[str, dict[str, int]] = {}

    def check(phase: str) -> None:
        n = {"before": 1, "during": 2, "after": 3}[phase]
        seen[phase] = {a: create(client, a, f"+1415555{n}1{i:02d}").status_code
                       for i, a in enumerate(PROVIDER_ACCOUNTS)}
        assert create(client, "other", f"+1415555{n}199").status_code == 201  # another account: untouched
        if phase == "during":
            for i, a in enumerate(PROVIDER_ACCOUNTS):
                assert shape(create(client, a, f"+1415555{n}2{i:02d}")) == bad_credentials[a]
            # its status API keeps answering (a revoked key on the create path only, by this choice)
            lookup = client.get(f"/v1/voice/accounts/tryvox-account/calls/{earlier}",
                                headers={"Authorization": "Bearer tvx-key"})
            assert lookup.status_code == 200

    phases(sim, "401", PROVIDER_ACCOUNTS, check)
    assert set(seen["during"].values()) == {401}
    assert set(seen["before"].values()) | set(seen["after"].values()) <= {200, 201}
    assert not placed(sim, "+14155552100") and placed(sim, "+14155553100")
    stats = sim.stats()["accounts"]
    assert all(stats[a]["scheduled_faults"] == {"401": 2} for a in PROVIDER_ACCOUNTS)
    assert stats["other"]["scheduled_faults"] == {}


def test_402_answers_as_exhausted_credit_does_in_each_providers_shape_only_in_its_window(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    sim.configure({"accounts": {a: {"credit": 0} for a in PROVIDER_ACCOUNTS}})
    try:
        no_credit = {a: shape(create(client, a, "+14155560001")) for a in PROVIDER_ACCOUNTS}
    finally:
        sim.configure({"accounts": {a: {"credit": None} for a in PROVIDER_ACCOUNTS}})
    assert {status for status, _ in no_credit.values()} == {402}

    def check(phase: str) -> None:
        n = {"before": 1, "during": 2, "after": 3}[phase]
        for i, a in enumerate(PROVIDER_ACCOUNTS):
            response = create(client, a, f"+1415556{n}1{i:02d}")
            if phase == "during":
                assert shape(response) == no_credit[a], a
            else:
                assert response.status_code in (200, 201), (phase, a, response.text)
        assert create(client, "other", f"+1415556{n}199").status_code == 201

    phases(sim, "402", PROVIDER_ACCOUNTS, check)
    assert not placed(sim, "+14155562100") and placed(sim, "+14155563100")
    errors = [e for e in sim.ledger()["api_errors"] if e["fault"] == "402"]
    assert sorted(e["account"] for e in errors) == sorted(PROVIDER_ACCOUNTS)


def test_5xx_is_a_503_without_retry_after_that_places_nothing(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    codes: dict[str, httpx.Response] = {}

    def check(phase: str) -> None:
        codes[phase] = create(client, "tryvox-account", f"+141555701{len(codes)}")
        assert create(client, "other", f"+141555702{len(codes)}").status_code == 201

    phases(sim, "5xx", ["tryvox-account"], check)
    assert codes["before"].status_code == codes["after"].status_code == 201
    assert codes["during"].status_code == 503 and "Retry-After" not in codes["during"].headers
    assert codes["during"].json()["error"]["code"] == "server_error"  # TryVox's error shape
    assert not placed(sim, "+1415557011") and placed(sim, "+1415557012")
    assert sim.stats()["accounts"]["tryvox-account"]["scheduled_faults"] == {"5xx": 1}


def test_placed_5xx_places_the_call_sends_its_callbacks_and_answers_502(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    codes: dict[str, int] = {}
    with CallbackSink() as sink:
        def check(phase: str) -> None:
            to = f"+141555801{len(codes)}"
            codes[phase] = create(client, "tryvox-account", to, hangup_url=sink.url(f"/{to}")).status_code
            assert create(client, "other", f"+141555802{len(codes)}").status_code == 201

        phases(sim, "placed_5xx", ["tryvox-account"], check)
        sink.wait_for(lambda reqs: any(r.path == "/+1415558011" for r in reqs))  # its real hangup
    assert codes == {"before": 201, "during": 502, "after": 201}
    rows = placed(sim, "+1415558011")
    assert len(rows) == 1 and rows[0]["answered_status"] == 502
    assert placed(sim, "+1415558010")[0]["answered_status"] is None
    assert sim.stats()["accounts"]["tryvox-account"]["scheduled_faults"] == {"placed_5xx": 1}


def test_refused_closes_the_whole_listener_for_its_window_then_listens_again(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    start, end = schedule(sim, "refused", ["tryvox-account"])
    assert create(client, "tryvox-account", "+14155590010").status_code == 201  # keep-alive, before
    wait_until(start + 0.3)  # the listener closes within ~50 ms of the start
    for account in ("tryvox-account", "other"):  # one socket serves both: both are refused
        with pytest.raises(httpx.ConnectError):
            create(client, account, "+14155590011")
    assert time.monotonic() < end - 0.05
    wait_until(end + 0.2)
    assert create(client, "tryvox-account", "+14155590012").status_code == 201
    destinations = {c["destination"] for c in sim.ledger()["calls"]}
    assert "+14155590011" not in destinations and {"+14155590010", "+14155590012"} <= destinations


def test_the_schedule_is_listed_and_cleared_and_a_cleared_fault_never_fires(
    sim: RunningSimulator, client: httpx.Client,
) -> None:
    listing = sim.schedule_faults([{"account": "other", "fault": 402, "start_in": 0.3, "seconds": 5},
                                   {"account": "other", "fault": "refused", "start_in": 0.3, "seconds": 5}])
    rows = sim.scheduled_faults()["faults"]
    assert rows == listing["faults"] and [r["fault"] for r in rows] == ["402", "refused"]
    assert all(r["state"] == "pending" and r["end"] - r["start"] == pytest.approx(5) for r in rows)
    assert rows[0]["start_wall"] == pytest.approx(time.time() + 0.3, abs=0.3)
    sim.clear_faults()
    assert sim.scheduled_faults()["faults"] == []
    time.sleep(0.5)
    assert create(client, "other", "+14155591001").status_code == 201


@pytest.mark.parametrize(("entry", "message"), [
    ({"account": "nobody", "fault": "401", "seconds": 1}, "scheduled_faults[0].account: unknown account"),
    ({"account": "other", "fault": "418", "seconds": 1}, "scheduled_faults[0].fault: '418' is not one of"),
    ({"account": "other", "fault": "5xx", "start_in": -1, "seconds": 1}, "scheduled_faults[0].start_in"),
    ({"account": "other", "fault": "5xx", "seconds": -2}, "scheduled_faults[0].seconds: must be > 0"),
    ({"account": "other", "fault": "refused"}, "scheduled_faults[0].seconds: expected a number"),
    ({"account": "other", "fault": "5xx", "seconds": 1, "at": 3}, "scheduled_faults[0]: unknown key 'at'"),
])
def test_a_bad_schedule_is_400_naming_the_field(
    sim: RunningSimulator, client: httpx.Client, entry: dict[str, Any], message: str,
) -> None:
    response = client.post("/_sim/faults/schedule", json=[entry])
    assert response.status_code == 400 and message in response.json()["error"]
    assert sim.scheduled_faults()["faults"] == []


def test_the_config_section_is_validated_and_armed_from_the_start() -> None:
    accounts = [{"provider": "tryvox", "auth_id": "a", "auth_token": "k"}]
    specs = load_config({"accounts": accounts, "scheduled_faults": [
        {"account": "a", "fault": "5xx", "start_in": 60, "seconds": 1}]}).scheduled_faults
    assert [(s.account, s.fault, s.start_in, s.seconds) for s in specs] == [("a", "5xx", 60.0, 1.0)]
    with pytest.raises(ConfigError, match=r"scheduled_faults\[0\]\.account"):
        load_config({"accounts": accounts,
                     "scheduled_faults": [{"account": "b", "fault": "5xx", "seconds": 1}]})
    with pytest.raises(ConfigError, match="POST /_sim/faults/schedule"):
        apply_patch(load_config({"accounts": accounts}), {"scheduled_faults": []})
    revoked = {"account": "other", "fault": "401", "start_in": 0, "seconds": 60}
    config = {**CONFIG, "scheduled_faults": [revoked]}
    with start_simulator(config, speed=20) as own, httpx.Client(base_url=own.base_url) as client:
        assert [f["state"] for f in own.scheduled_faults()["faults"]] == ["active"]
        assert create(client, "other", "+14155592001").status_code == 401
        assert create(client, "tryvox-account", "+14155592002").status_code == 201
