"""Each account's circuit breaker, seen and switched (issue 23), on the real Postgres and Redis: `dialer
account disable|enable|list` and the API's /accounts routes with their scopes; a campaign's accounts with
their circuits and latest changes in `campaign status`, GET /campaigns/{id} and the console; the
`dialer_account_circuit_state` gauge, scoped per key; and the `account.circuit_changed` event written to the
outbox once per endpoint in the transaction of the change."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from campaigns import circuits, control
from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.circuit_rules import Cause, CircuitPolicy
from campaigns.states import CircuitState
from campaigns.webhook_endpoints import set_notify_url
from tests.engine_harness import load_campaign, numbers
from workers.entrypoints import cli_account, cli_campaign_control, cli_webhooks
from workers.entrypoints.api.app import create_app
from workers.entrypoints.cli import app as cli
from workers.metrics.scoped_exposition import exposition_for_accounts
from workers.metrics.state_collector import DialerStateCollector

TOKEN = f"never-shown-{secrets.token_hex(6)}"
UNROUTABLE = "http://127.0.0.1:9"  # the discard port: nothing here dials, and nothing would leave
MISSING = f"no-such-{secrets.token_hex(3)}"


def _account(conn: psycopg.Connection, name: str) -> int:
    return add_account(conn, name=name, provider="plivo", auth_id=f"MA{secrets.token_hex(4).upper()}",
                       auth_token=TOKEN, cps=5, max_concurrent=5, base_url=UNROUTABLE)


def _campaign(conn: psycopg.Connection, name: str, primary: int, fallbacks: list[int] = ()) -> int:  # type: ignore[assignment]
    campaign_id = load_campaign(name, numbers(2, start=50000 + secrets.randbelow(9000)))
    conn.execute("UPDATE campaign SET account_id = %s WHERE id = %s", (primary, campaign_id))
    for position, account_id in enumerate(fallbacks, start=1):
        conn.execute("INSERT INTO campaign_fallback_account (campaign_id, position, account_id) "
                     "VALUES (%s, %s, %s)", (campaign_id, position, account_id))
    return campaign_id


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(database_url: str) -> dict[str, Any]:
    """Accounts A (a campaign's primary), F (its fallback) and B (another tenant's); keys of each role."""
    tag = secrets.token_hex(3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        a, f, b = (_account(conn, f"circ-{x}-{tag}") for x in ("a", "f", "b"))
        campaign = _campaign(conn, f"circuits {tag}", a, [f])
        keys = {
            "admin": create_api_key(conn, name=f"circ-admin-{tag}", role="admin").key,
            "operator_a": create_api_key(conn, name=f"circ-op-a-{tag}", role="operator", accounts=[a, f]).key,
            "viewer_a": create_api_key(conn, name=f"circ-view-a-{tag}", role="viewer", accounts=[a]).key,
            "operator_b": create_api_key(conn, name=f"circ-op-b-{tag}", role="operator", accounts=[b]).key,
        }
    return {"a": a, "f": f, "b": b, "campaign": campaign, "tag": tag, "keys": keys,
            "names": {"a": f"circ-a-{tag}", "f": f"circ-f-{tag}", "b": f"circ-b-{tag}"}}


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(apply_events=False), base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture()
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's tables at a width that folds no cell (their consoles were made at import)."""
    for module in (cli_account, cli_campaign_control, cli_webhooks):
        monkeypatch.setattr(module.console, "width", 400)


def _row_of(output: str, name: str) -> str:
    (line,) = [line for line in output.splitlines() if f" {name} " in line]
    return line


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_disable_opens_until_enable_and_list_shows_it(db: psycopg.Connection, world: dict[str, Any],
                                                          wide: None) -> None:
    runner, name = CliRunner(), world["names"]["b"]
    disabled = runner.invoke(cli, ["account", "disable", name, "--reason", "carrier maintenance"])
    assert disabled.exit_code == 0, disabled.output
    circuit = circuits.circuit_of(db, world["b"])
    assert (circuit.state, circuit.cause, circuit.reason) == (CircuitState.OPEN, "operator",
                                                              "carrier maintenance")
    assert circuit.retry_at is None  # an operator's disable lasts until enabled
    listed = runner.invoke(cli, ["account", "list"])
    assert listed.exit_code == 0, listed.output
    row = _row_of(listed.output, name)
    assert "open" in row and "operator: carrier maintenance" in row and "until enabled" in row
    assert f"{circuit.changed_at:%Y-%m-%d %H:%M:%S}" in row
    assert TOKEN not in listed.output
    enabled = runner.invoke(cli, ["account", "enable", name])
    assert enabled.exit_code == 0 and "enabled" in enabled.output
    assert circuits.circuit_of(db, world["b"]).state == CircuitState.CLOSED
    row = _row_of(runner.invoke(cli, ["account", "list"]).output, name)
    assert "closed" in row and "open" not in row
    again = runner.invoke(cli, ["account", "enable", name])
    assert again.exit_code == 0 and "was not disabled" in again.output
    unknown = runner.invoke(cli, ["account", "disable", MISSING])
    assert unknown.exit_code != 0


# --- the API ------------------------------------------------------------------------------------------


def test_an_operator_of_the_account_disables_and_enables_it_and_others_cannot(
        client: TestClient, db: psycopg.Connection, world: dict[str, Any]) -> None:
    keys, name = world["keys"], world["names"]["a"]
    viewer = client.post(f"/accounts/{name}/disable", headers=_bearer(keys["viewer_a"]), json={})
    assert viewer.status_code == 403 and viewer.json()["error"] == "forbidden"
    theirs = client.post(f"/accounts/{name}/disable", headers=_bearer(keys["operator_b"]), json={})
    missing = client.post(f"/accounts/{MISSING}/disable", headers=_bearer(keys["operator_b"]), json={})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["message"].replace(name, "N") == missing.json()["message"].replace(MISSING, "N")
    assert circuits.circuit_of(db, world["a"]).state == CircuitState.CLOSED  # none of those changed it

    done = client.post(f"/accounts/{name}/disable", headers=_bearer(keys["operator_a"]),
                       json={"reason": "moving to the new trunk"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["changed"] is True and body["account_id"] == world["a"]
    assert body["circuit"]["state"] == "open" and body["circuit"]["cause"] == "operator"
    assert body["circuit"]["reason"] == "moving to the new trunk" and body["circuit"]["retry_at"] is None

    listed = client.get("/accounts", headers=_bearer(keys["viewer_a"]))
    assert listed.status_code == 200 and TOKEN not in listed.text
    assert [(x["id"], x["circuit"]["state"]) for x in listed.json()] == [(world["a"], "open")]
    def listed_ids(key: str) -> set[int]:
        return {x["id"] for x in client.get("/accounts", headers=_bearer(keys[key])).json()}

    assert world["a"] not in listed_ids("operator_b") and world["b"] in listed_ids("operator_b")
    assert {world["a"], world["b"]} <= listed_ids("admin")

    assert client.post(f"/accounts/{name}/enable", headers=_bearer(keys["viewer_a"])).status_code == 403
    assert client.post(f"/accounts/{name}/enable", headers=_bearer(keys["operator_b"])).status_code == 404
    back = client.post(f"/accounts/{world['a']}/enable", headers=_bearer(keys["operator_a"]))  # by id too
    assert back.status_code == 200 and back.json()["circuit"]["state"] == "closed"
    assert circuits.circuit_of(db, world["a"]).state == CircuitState.CLOSED


# --- campaign status ----------------------------------------------------------------------------------


def _open_fallback(db: psycopg.Connection, world: dict[str, Any]) -> str:
    reason = f"5xx: 9 of 12 requests in 10 s ({world['tag']})"
    circuits.enable(db, world["f"])
    assert circuits.open_circuit(db, world["f"], Cause.FAILURE_RATE, reason, CircuitPolicy())
    return reason


def test_campaign_status_shows_each_account_in_order_with_its_circuit_and_changes(
        client: TestClient, db: psycopg.Connection, world: dict[str, Any], wide: None) -> None:
    reason = _open_fallback(db, world)
    st = control.status(db, world["campaign"])
    primary, fallback = st.accounts
    assert (primary.account_id, primary.role, primary.state) == (world["a"], "primary", CircuitState.CLOSED)
    assert (fallback.account_id, fallback.role, fallback.state) == (world["f"], "fallback 1",
                                                                    CircuitState.OPEN)
    assert fallback.cause == "failure_rate" and fallback.reason == reason
    assert fallback.retry_at is not None and fallback.since is not None and fallback.retry_at > fallback.since
    assert fallback.changes[0].state == CircuitState.OPEN and fallback.changes[0].reason == reason
    # The API test above disabled and enabled A: its history, newest first.
    assert [(c.state, c.cause) for c in primary.changes[:2]] == [(CircuitState.CLOSED, None),
                                                                 (CircuitState.OPEN, "operator")]

    shown = CliRunner().invoke(cli, ["campaign", "status", str(world["campaign"])])
    assert shown.exit_code == 0, shown.output
    row = _row_of(shown.output, f"{world['names']['f']} (plivo)")
    assert "fallback 1" in row and "open" in row and reason in row and f"{fallback.retry_at:%H:%M:%S}" in row
    assert "circuit changes" in shown.output and "moving to the new trunk" in shown.output

    answer = client.get(f"/campaigns/{world['campaign']}", headers=_bearer(world["keys"]["operator_a"]))
    assert answer.status_code == 200
    accounts = answer.json()["accounts"]
    assert [(x["name"], x["position"], x["state"]) for x in accounts] == [
        (world["names"]["a"], 0, "closed"), (world["names"]["f"], 1, "open")]
    assert accounts[1]["reason"] == reason and accounts[1]["changes"][0]["state"] == "open"
    # A key that does not reach the fallback sees the campaign without it, as if it did not exist.
    narrow = client.get(f"/campaigns/{world['campaign']}", headers=_bearer(world["keys"]["viewer_a"]))
    assert [x["account_id"] for x in narrow.json()["accounts"]] == [world["a"]]
    assert world["names"]["f"] not in narrow.text


# --- /metrics -----------------------------------------------------------------------------------------


def _gauge(text: str, account: int) -> dict[str, float]:
    found = re.findall(rf'^dialer_account_circuit_state{{account="{account}",state="(\w+)"}} (\S+)$', text,
                       re.MULTILINE)
    return {state: float(value) for state, value in found}


def test_the_circuit_gauge_is_one_for_the_state_now_and_scoped_to_the_keys_accounts(
        client: TestClient, db: psycopg.Connection, database_url: str, redis_client: Any,
        world: dict[str, Any]) -> None:
    _open_fallback(db, world)
    collector = DialerStateCollector(database_url, redis_client)
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry)
    finally:
        collector.close()
    assert _gauge(text.decode(), world["f"]) == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert _gauge(text.decode(), world["a"]) == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    scoped = exposition_for_accounts(text, frozenset({world["a"]})).decode()
    assert _gauge(scoped, world["a"]) and not _gauge(scoped, world["f"]) and not _gauge(scoped, world["b"])

    # Through /metrics with a viewer key of A and F: its accounts' series only (the snapshot may be older).
    key = _bearer(world["keys"]["operator_a"])
    deadline = time.monotonic() + 30
    while (seen := _gauge(client.get("/metrics", headers=key).text, world["f"])).get("open") != 1.0:
        assert time.monotonic() < deadline, seen
        time.sleep(0.3)
    answer = client.get("/metrics", headers=key).text
    assert _gauge(answer, world["a"])["closed"] == 1.0 and not _gauge(answer, world["b"])


# --- outbound webhooks --------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _no_endpoint_left_behind(database_url: str) -> Iterator[None]:
    yield
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM webhook_endpoint WHERE url LIKE 'https://circuits-%.example.com/%'")


def _endpoint(conn: psycopg.Connection, label: str, **owner: int) -> int:
    set_notify_url(conn, url=f"https://circuits-{label}.example.com/hooks", development=False, **owner)
    column, value = next(iter(owner.items()))
    row = conn.execute(f"SELECT id FROM webhook_endpoint WHERE {column} = %s", (value,)).fetchone()
    assert row is not None
    return int(row[0])


Delivery = tuple[int, int | None, str, dict[str, Any]]  # endpoint, campaign, order key, payload


def _deliveries(conn: psycopg.Connection, account_id: int) -> list[Delivery]:
    return conn.execute("SELECT endpoint_id, campaign_id, order_key, payload FROM webhook_delivery "
                        "WHERE event_type = 'account.circuit_changed' AND order_key = %s "
                        "ORDER BY endpoint_id", (f"a{account_id}",)).fetchall()


def test_a_circuit_change_is_one_event_per_endpoint_of_the_account_and_its_live_campaigns(
        db: psycopg.Connection, world: dict[str, Any], wide: None) -> None:
    tag = secrets.token_hex(3)
    shared, other = _account(db, f"circ-hook-{tag}"), _account(db, f"circ-hook-other-{tag}")
    primary_of = _campaign(db, f"hook primary {tag}", shared)  # the account's primary: its own endpoint
    fallback_of = _campaign(db, f"hook fallback {tag}", other, [shared])  # a fallback: its own endpoint too
    finished = _campaign(db, f"hook done {tag}", shared)  # completed: not told
    db.execute("UPDATE campaign SET state = 'completed' WHERE id = %s", (finished,))
    mute = _campaign(db, f"hook mute {tag}", shared)  # no endpoint of its own: the account's hears it
    endpoints = {"account": _endpoint(db, f"acct-{tag}", account_id=shared),
                 "primary": _endpoint(db, f"prim-{tag}", campaign_id=primary_of),
                 "fallback": _endpoint(db, f"fall-{tag}", campaign_id=fallback_of),
                 "finished": _endpoint(db, f"done-{tag}", campaign_id=finished),
                 "other": _endpoint(db, f"other-{tag}", account_id=other)}

    with pytest.raises(RuntimeError), db.transaction():
        circuits.disable(db, shared, "rolled back")
        raise RuntimeError("the process dies before its commit")
    assert _deliveries(db, shared) == []

    circuits.disable(db, shared, "carrier maintenance")
    rows = _deliveries(db, shared)
    assert sorted(r[0] for r in rows) == sorted([endpoints["account"], endpoints["primary"],
                                                 endpoints["fallback"]])  # each endpoint once
    by_endpoint = {r[0]: r for r in rows}
    assert by_endpoint[endpoints["primary"]][1] == primary_of
    assert by_endpoint[endpoints["fallback"]][1] == fallback_of
    assert by_endpoint[endpoints["account"]][1] is None  # several campaigns use it: none is named
    payload = by_endpoint[endpoints["account"]][3]
    assert payload["type"] == "account.circuit_changed" and payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert {k: data[k] for k in ("account_id", "account", "state", "cause", "reason", "retry_at")} == {
        "account_id": shared, "account": f"circ-hook-{tag}", "state": "open", "cause": "operator",
        "reason": "carrier maintenance", "retry_at": None}
    assert data["changed_at"] and {r[3]["data"]["changed_at"] for r in rows} == {data["changed_at"]}
    assert mute  # its events go to the account's endpoint, already counted above

    circuits.enable(db, shared)
    assert circuits.open_circuit(db, shared, Cause.PAYMENT, "402 Payment Required", CircuitPolicy())
    latest = [r for r in _deliveries(db, shared) if r[3]["data"]["cause"] == "payment"]
    assert len(latest) == 3 and all(r[3]["data"]["retry_at"] is not None for r in latest)

    # An account only one live campaign uses: that campaign is named on the account endpoint's row.
    single = _account(db, f"circ-hook-single-{tag}")
    only = _campaign(db, f"hook single {tag}", single)
    endpoint = _endpoint(db, f"single-{tag}", account_id=single)
    circuits.disable(db, single)
    assert [(r[0], r[1]) for r in _deliveries(db, single)] == [(endpoint, only)]

    listed = CliRunner().invoke(cli, ["webhooks", "deliveries", "--limit", "50"])
    assert listed.exit_code == 0, listed.output
    assert "account.circuit_changed" in listed.output


# --- the console --------------------------------------------------------------------------------------


def _signed_in(key: str) -> TestClient:
    console = TestClient(create_app(apply_events=False), base_url="http://127.0.0.1")
    console.__enter__()
    answer = console.post("/ui/login", data={"key": key, "next": "/ui/accounts"}, follow_redirects=False)
    assert answer.status_code == 303
    return console


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _circuit_cell(page: str, account_id: int) -> str:
    found = re.search(rf'<td class="circuit" data-account="{account_id}">(.*?)</td>', page, re.DOTALL)
    assert found, f"no circuit shown for account {account_id}"
    return found.group(1)


def test_the_console_shows_circuits_and_an_operator_disables_and_enables(
        db: psycopg.Connection, world: dict[str, Any]) -> None:
    operator, viewer = _signed_in(world["keys"]["operator_a"]), _signed_in(world["keys"]["viewer_a"])
    try:
        page = operator.get("/ui/accounts").text
        assert "circuit-closed" in _circuit_cell(page, world["a"]) and f"disable-{world['a']}" in page
        assert f'data-account="{world["b"]}"' not in page  # another tenant's account is not listed
        refused = operator.post(f"/ui/accounts/{world['a']}/disable", data={"csrf": "forged"})
        assert refused.status_code == 403
        done = operator.post(f"/ui/accounts/{world['a']}/disable",
                             data={"csrf": _csrf(page), "reason": "console test"}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/ui/accounts"
        circuit = circuits.circuit_of(db, world["a"])
        assert (circuit.state, circuit.reason) == (CircuitState.OPEN, "console test")
        page = operator.get("/ui/accounts").text
        cell = _circuit_cell(page, world["a"])
        assert "circuit-open" in cell and "operator: console test" in cell and "until enabled" in cell
        assert f"{circuit.changed_at:%Y-%m-%d %H:%M:%S}" in cell and f"enable-{world['a']}" in page

        seen = viewer.get("/ui/accounts").text
        assert "circuit-open" in _circuit_cell(seen, world["a"])
        assert f"enable-{world['a']}" not in seen and f"disable-{world['a']}" not in seen
        assert viewer.post(f"/ui/accounts/{world['a']}/enable", data={"csrf": _csrf(seen)}).status_code == 403
        assert circuits.circuit_of(db, world["a"]).state == CircuitState.OPEN
        theirs = operator.post(f"/ui/accounts/{world['b']}/disable", data={"csrf": _csrf(page)})
        assert theirs.status_code == 404 and circuits.circuit_of(db, world["b"]).state == CircuitState.CLOSED

        reason = _open_fallback(db, world)
        campaign = operator.get(f"/ui/campaigns/{world['campaign']}").text
        rows = re.search(r'<table id="campaign-accounts">(.*?)</table>', campaign, re.DOTALL)
        assert rows is not None
        assert world["names"]["f"] in rows.group(1) and reason in rows.group(1)
        assert "circuit-open" in rows.group(1) and "fallback 1" in rows.group(1)
        assert "console test" in rows.group(1)  # A's latest change, in its history
        narrow = viewer.get(f"/ui/campaigns/{world['campaign']}").text
        assert world["names"]["f"] not in narrow  # the viewer does not reach the fallback

        back = operator.post(f"/ui/accounts/{world['a']}/enable", data={"csrf": _csrf(page)},
                             follow_redirects=False)
        assert back.status_code == 303 and circuits.circuit_of(db, world["a"]).state == CircuitState.CLOSED
    finally:
        operator.__exit__(None, None, None)
        viewer.__exit__(None, None, None)
