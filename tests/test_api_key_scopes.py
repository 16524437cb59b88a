"""API keys with a scope (issue 20, "API keys belong to no account"), on the in-process API and the real
Postgres: a key reaches its own accounts; what belongs to another account answers exactly as if it did not
exist; a role too low for an action on what it sees is a 403; listings show only the key's accounts.

The walk at the end sends a request to every route of the app's OpenAPI with an operator key of account B
against account A's objects, so a route added later without a scope check fails it."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from typer.testing import CliRunner

from campaigns import dnc
from campaigns.accounts import add_account
from campaigns.api_keys import ApiKeyIdentity, Role, create_api_key, verify_api_key
from campaigns.db import SCHEMA_PATH
from campaigns.errors import InvalidRequest
from campaigns.frequency_caps import set_account_caps
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from workers.entrypoints.api.deps import require_api_key
from workers.entrypoints.cli import app as cli

MISSING_CAMPAIGN = 9_000_000_000_001
MISSING_KEY = 9_000_000_000_002
UNROUTABLE = "http://127.0.0.1:9"  # the discard port: if anything ever dialed these accounts, nothing leaves


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[dict[str, Any]]:
    """Accounts A and B; A's campaign (completed, with a finished run 1 and a schedule), a number on A's
    DNC list, A's caps; and keys of each role. Every text of A's that a leak would show is marked."""
    tag = secrets.token_hex(3)
    marker = f"secret-of-a-{tag}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        a = add_account(conn, name=f"scope-a-{tag}", provider="plivo", auth_id=f"MA{tag}", auth_token="t",
                        cps=5, max_concurrent=5, base_url=UNROUTABLE)
        b = add_account(conn, name=f"scope-b-{tag}", provider="plivo", auth_id=f"MB{tag}", auth_token="t",
                        cps=5, max_concurrent=5, base_url=UNROUTABLE)
        phones = numbers(3, start=30000 + secrets.randbelow(5000))
        campaign = load_campaign(f"{marker}-campaign", phones)
        prepare_and_start(conn, campaign, a, start=False)
        conn.execute("UPDATE destination SET status = 'done', outcome = 'busy', attempts_made = 1 "
                     "WHERE campaign_id = %s", (campaign,))
        conn.execute("UPDATE campaign SET state = 'completed', state_reason = %s WHERE id = %s",
                     (f"{marker}-reason", campaign))
        conn.execute("INSERT INTO campaign_run (campaign_id, run_no, trigger, destinations, finished_at, "
                     "finish_reason) VALUES (%s, 1, 'start', 3, now(), %s)", (campaign, f"{marker}-run"))
        # Once a year, at an hour no test is near: the schedule exists to be found, not to fire.
        conn.execute("INSERT INTO campaign_schedule (campaign_id, cron, timezone, last_note) "
                     "VALUES (%s, '0 3 1 1 *', 'UTC', %s)", (campaign, f"{marker}-schedule"))
        dnc_number = numbers(1, start=40000 + secrets.randbelow(5000), area="646")[0]
        dnc.add_number(conn, dnc_number, account_id=a, reason=f"{marker}-dnc", source="api")
        set_account_caps(conn, a, per_day=7, per_week=9)
        keys = {
            "admin": create_api_key(conn, name=f"admin-{tag}", role=Role.ADMIN),
            "operator_a": create_api_key(conn, name=f"op-a-{tag}", role=Role.OPERATOR, accounts=[a]),
            "viewer_a": create_api_key(conn, name=f"view-a-{tag}", role=Role.VIEWER, accounts=[a]),
            "operator_b": create_api_key(conn, name=f"op-b-{tag}", role=Role.OPERATOR, accounts=[b]),
            "viewer_b": create_api_key(conn, name=f"view-b-{tag}", role=Role.VIEWER, accounts=[b]),
        }
    yield {"a": a, "b": b, "a_name": f"scope-a-{tag}", "b_name": f"scope-b-{tag}", "campaign": campaign,
           "dnc_number": dnc_number, "marker": marker, "auth_id_a": f"MA{tag}",
           "keys": {role: _bearer(new.key) for role, new in keys.items()},
           "key_ids": {role: new.id for role, new in keys.items()}}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM campaign_schedule WHERE campaign_id = %s", (campaign,))
        conn.execute("UPDATE campaign SET state = 'cancelled' WHERE id = %s", (campaign,))


def _a_state(db: psycopg.Connection, world: dict[str, Any]) -> tuple[Any, ...]:
    """Everything of A's that a request through another account's key must not change."""
    campaign = db.execute("SELECT state, cps, account_id, (SELECT count(*) FROM campaign_run r "
                          "WHERE r.campaign_id = c.id), (SELECT count(*) FROM campaign_schedule s "
                          "WHERE s.campaign_id = c.id) FROM campaign c WHERE id = %s",
                          (world["campaign"],)).fetchone()
    caps = db.execute("SELECT max_attempts_per_number_day, max_attempts_per_number_week "
                      "FROM provider_account WHERE id = %s", (world["a"],)).fetchone()
    listed = db.execute("SELECT count(*) FROM account_dnc_number WHERE account_id = %s",
                        (world["a"],)).fetchone()
    return campaign, caps, listed


# --- keys, their scope, the CLI and the upgrade ---------------------------------------------------------


def test_a_key_verifies_with_its_role_and_accounts(db: psycopg.Connection, world: dict[str, Any]) -> None:
    new = create_api_key(db, name="two-accounts", role="operator",
                         accounts=[world["a_name"], str(world["b"])])  # by name or by id
    holder = verify_api_key(db, new.key)
    assert holder is not None and holder.role is Role.OPERATOR
    assert holder.account_ids == frozenset({world["a"], world["b"]})
    assert holder.reaches(world["a"]) and not holder.reaches(None)
    assert holder.at_least(Role.VIEWER) and not holder.at_least(Role.ADMIN)


@pytest.mark.parametrize(("role", "accounts", "why"), [
    ("operator", [], "need at least one account"),
    ("viewer", [], "need at least one account"),
    ("admin", ["A"], "admin key reaches every account"),
    ("owner", ["A"], "unknown role"),
])
def test_a_key_whose_scope_does_not_add_up_is_refused(db: psycopg.Connection, world: dict[str, Any],
                                                      role: str, accounts: list[str], why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        create_api_key(db, name="bad", role=role, accounts=[world["a_name"] for _ in accounts])


def test_cli_create_takes_a_role_and_accounts_and_list_shows_them(db: psycopg.Connection,
                                                                   world: dict[str, Any]) -> None:
    runner = CliRunner()
    name = f"cli-{secrets.token_hex(3)}"
    created = runner.invoke(cli, ["apikey", "create", name, "--role", "operator",
                                  "--account", world["a_name"], "--account", world["b_name"]])
    assert created.exit_code == 0, created.output
    holder = verify_api_key(db, created.stdout.strip())
    assert holder is not None and holder.role is Role.OPERATOR
    assert holder.account_ids == frozenset({world["a"], world["b"]})
    listed = runner.invoke(cli, ["apikey", "list"], env={"COLUMNS": "300"})
    # Each key's row, with the lines its cells wrap onto (their id cell is blank), read column by column: the
    # table's width is the console's, fixed when the CLI module was first imported in this process, and a
    # narrow one folds names across lines.
    rows: list[list[str]] = []
    for line in listed.stdout.splitlines():
        if re.match(r"│\s*\d+\s*│", line):
            rows.append([line])
        elif rows and re.match(r"│\s+│", line):
            rows[-1].append(line)
    read = [["".join(part.strip() for part in column)
             for column in zip(*(line.split("│")[1:-1] for line in row), strict=True)] for row in rows]
    cells = " ".join(next(row for row in read if row[1] == name))
    assert "operator" in cells and world["a_name"] in cells and world["b_name"] in cells


def test_cli_create_without_a_role_or_with_an_operator_of_no_account_fails(database_url: str) -> None:
    runner = CliRunner()
    no_role = runner.invoke(cli, ["apikey", "create", "who"])
    assert no_role.exit_code == 2 and "--role" in no_role.output
    no_account = runner.invoke(cli, ["apikey", "create", "who", "--role", "operator"])
    assert no_account.exit_code != 0 and isinstance(no_account.exception, InvalidRequest)


OLD_API_KEY_TABLE = """CREATE TABLE api_key (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), revoked_at TIMESTAMPTZ,
    CONSTRAINT api_key_key_hash_key UNIQUE (key_hash))"""


def test_a_key_made_before_scopes_is_admin_after_the_upgrade_and_new_keys_must_name_a_role(
        database_url: str) -> None:
    schema = f"upgrade_{secrets.token_hex(3)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute(OLD_API_KEY_TABLE)  # the table as 899e505 made it, holding one key
            conn.execute("INSERT INTO api_key (name, key_hash) VALUES ('ops', 'h1')")
            conn.execute(SCHEMA_PATH.read_text())  # `dialer db init` on the existing database
            conn.execute(SCHEMA_PATH.read_text())  # and again: idempotent
            assert conn.execute("SELECT role FROM api_key WHERE name = 'ops'").fetchone() == ("admin",)
            with pytest.raises(psycopg.errors.NotNullViolation):
                conn.execute("INSERT INTO api_key (name, key_hash) VALUES ('new', 'h2')")
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_require_api_key_takes_the_identity_the_request_guard_verified() -> None:
    verified = ApiKeyIdentity(id=1, name="guarded", role=Role.VIEWER, account_ids=frozenset({5}))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                       "state": {"api_key": verified}})
    # No header and no pool needed: the guard verified the key before the body was read.
    assert asyncio.run(require_api_key(request, None)) is verified


# --- roles and scope on the API ------------------------------------------------------------------------


def test_a_viewer_reads_its_accounts_campaign_but_gets_403_for_every_change(
        client: TestClient, world: dict[str, Any], db: psycopg.Connection) -> None:
    viewer, campaign = world["keys"]["viewer_a"], world["campaign"]
    assert client.get(f"/campaigns/{campaign}", headers=viewer).status_code == 200
    assert client.get(f"/campaigns/{campaign}/runs", headers=viewer).status_code == 200
    assert client.get(f"/campaigns/{campaign}/results", headers=viewer).status_code == 200
    assert client.get("/dnc", headers=viewer, params={"account": world["a_name"]}).status_code == 200
    before = _a_state(db, world)
    for method, path, body in [("POST", f"/campaigns/{campaign}/start", None),
                               ("POST", f"/campaigns/{campaign}/rerun", {}),
                               ("PATCH", f"/campaigns/{campaign}", {"cps": 2}),
                               ("DELETE", f"/campaigns/{campaign}/schedule", None),
                               ("POST", "/dnc", {"number": "+12125550142", "account": world["a_name"]}),
                               ("PUT", f"/accounts/{world['a_name']}/frequency-caps", {"per_day": 1}),
                               ("POST", "/api-keys", {"name": "x", "role": "admin"})]:
        response = client.request(method, path, headers=viewer, json=body)
        assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
        assert response.json()["error"] == "forbidden"
    assert _a_state(db, world) == before


def test_an_operator_of_another_account_finds_nothing_of_a(client: TestClient, world: dict[str, Any]) -> None:
    operator_b, campaign = world["keys"]["operator_b"], world["campaign"]
    seen = client.get(f"/campaigns/{campaign}", headers=operator_b)
    missing = client.get(f"/campaigns/{MISSING_CAMPAIGN}", headers=operator_b)
    assert seen.status_code == missing.status_code == 404
    assert seen.json()["message"].replace(str(campaign), "N") == missing.json()["message"].replace(
        str(MISSING_CAMPAIGN), "N")
    # A viewer of B too: out of scope is 404 whatever the role, never the 403 that would confirm it exists.
    assert client.post(f"/campaigns/{campaign}/start", headers=world["keys"]["viewer_b"]).status_code == 404


def test_listings_show_only_the_keys_accounts(client: TestClient, world: dict[str, Any]) -> None:
    def listed(key: str) -> set[int]:
        page = client.get("/campaigns", headers=world["keys"][key], params={"limit": 500})
        assert page.status_code == 200, page.text
        return {item["id"] for item in page.json()["items"]}

    assert world["campaign"] in listed("admin") and world["campaign"] in listed("viewer_a")
    assert world["campaign"] not in listed("operator_b")
    assert {item for item in listed("operator_b")} <= _campaigns_of(client, world, world["b"])
    mine = client.get("/dnc", headers=world["keys"]["viewer_a"], params={"account": world["a_name"]})
    assert world["dnc_number"] in mine.text
    theirs = client.get("/dnc", headers=world["keys"]["operator_b"], params={"account": world["a_name"]})
    unknown = client.get("/dnc", headers=world["keys"]["operator_b"], params={"account": "no-such-acct"})
    assert theirs.status_code == unknown.status_code == 422
    assert theirs.json()["error"] == unknown.json()["error"] and world["dnc_number"] not in theirs.text


def _campaigns_of(client: TestClient, world: dict[str, Any], account_id: int) -> set[int]:
    page = client.get("/campaigns", headers=world["keys"]["admin"], params={"limit": 500}).json()
    return {item["id"] for item in page["items"] if item["account_id"] == account_id}


def test_the_global_dnc_list_is_read_by_any_key_and_changed_by_admins_only(
        client: TestClient, world: dict[str, Any]) -> None:
    number = numbers(1, start=45000 + secrets.randbelow(4000), area="718")[0]
    refused = client.post("/dnc", headers=world["keys"]["operator_a"], json={"number": number})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert client.delete(f"/dnc/{number}", headers=world["keys"]["operator_a"]).status_code == 403
    added = client.post("/dnc", headers=world["keys"]["admin"], json={"number": number})
    assert added.status_code == 201, added.text
    for key in ("operator_b", "viewer_b"):
        listed = client.get("/dnc", headers=world["keys"][key])
        assert listed.status_code == 200 and number in listed.text
    assert client.delete(f"/dnc/{number}", headers=world["keys"]["admin"]).json()["changed"] is True


def test_an_operator_uploads_only_to_its_own_accounts(client: TestClient, world: dict[str, Any]) -> None:
    def upload(key: str, account: str | None) -> Any:
        data = {"name": f"up-{secrets.token_hex(3)}"} | ({"account": account} if account else {})
        return client.post("/campaigns", headers=world["keys"][key], data=data,
                           files={"file": ("a.csv", b"phone\n+12125550177\n", "text/csv")})

    mine = upload("operator_a", world["a_name"])
    assert mine.status_code == 201, mine.text
    client.post(f"/campaigns/{mine.json()['campaign_id']}/cancel", headers=world["keys"]["operator_a"])
    theirs, unknown = upload("operator_b", world["a_name"]), upload("operator_b", "no-such-account")
    assert theirs.status_code == unknown.status_code == 422
    assert theirs.json()["fields"][0]["field"] == unknown.json()["fields"][0]["field"] == "account"
    assert upload("operator_b", None).status_code == 422  # a campaign of no account is for admins
    assert upload("viewer_a", world["a_name"]).status_code == 403


def test_an_operator_cannot_move_its_campaign_to_an_account_it_does_not_reach(
        client: TestClient, world: dict[str, Any], db: psycopg.Connection) -> None:
    campaign = load_campaign(f"movable-{secrets.token_hex(3)}", numbers(1, start=47000),
                             account_id=world["b"])
    moved = client.patch(f"/campaigns/{campaign}", headers=world["keys"]["operator_b"],
                         json={"account": world["a_name"]})
    assert moved.status_code == 422 and moved.json()["fields"][0]["field"] == "account"
    row = db.execute("SELECT account_id FROM campaign WHERE id = %s", (campaign,)).fetchone()
    assert row == (world["b"],)


def test_api_keys_are_made_listed_and_revoked_by_admins_and_shown_once(
        client: TestClient, world: dict[str, Any]) -> None:
    admin = world["keys"]["admin"]
    made = client.post("/api-keys", headers=admin,
                       json={"name": "made-by-api", "role": "viewer", "accounts": [world["a_name"]]})
    assert made.status_code == 201, made.text
    new = made.json()
    viewer = _bearer(new["key"])
    assert client.get(f"/campaigns/{world['campaign']}", headers=viewer).status_code == 200
    assert client.post(f"/campaigns/{world['campaign']}/pause", headers=viewer).status_code == 403
    listed = client.get("/api-keys", headers=admin)
    assert new["key"] not in listed.text
    entry = next(k for k in listed.json() if k["id"] == new["id"])
    assert entry["role"] == "viewer" and entry["accounts"] == [world["a_name"]]
    for key in ("operator_a", "viewer_a"):
        assert client.get("/api-keys", headers=world["keys"][key]).status_code == 403
        assert client.delete(f"/api-keys/{new['id']}", headers=world["keys"][key]).status_code == 403
    assert client.delete(f"/api-keys/{new['id']}", headers=admin).json()["revoked_at"]
    assert client.get(f"/campaigns/{world['campaign']}", headers=viewer).status_code == 401
    unknown = client.post("/api-keys", headers=admin,
                          json={"name": "x", "role": "operator", "accounts": ["no-such-account"]})
    assert unknown.status_code == 422 and unknown.json()["fields"][0]["field"] == "accounts"


# --- the walk: every route, an operator key of B, A's objects -----------------------------------------

# Routes no API key opens, and why they are outside the walk.
OPEN_ROUTES = {
    "/health": "anonymous liveness, no account data",
    "/health/live": "anonymous liveness, no account data",
    "/health/ready": "anonymous readiness: which store answers, nothing of an account",
    "/metrics": "another account's key reads only its own series (tests/test_metrics_scrape.py)",
}
# Routes that name no object: they answer 2xx with what the key reaches, or 403 if the role is too low.
LISTINGS = {("GET", "/campaigns"), ("GET", "/dnc"), ("GET", "/accounts")}
# Routes for admin keys only: 403 to any other key, whatever object they name.
ADMIN_ONLY = re.compile(r"^/api-keys(/|$)")
CSV_FILE = ("a.csv", b"phone\n+12125550188\n", "text/csv")


def _request(method: str, path: str, ids: dict[str, Any]) -> dict[str, Any]:
    """A request that would act on the objects in `ids` if the key reached them."""
    account = ids["account"]
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/campaigns"): {"data": {"name": "probe", "account": account}, "files": {"file": CSV_FILE}},
        ("PATCH", "/campaigns/{campaign_id}"): {"json": {"cps": 3}},
        ("POST", "/dnc"): {"json": {"number": ids["number"], "account": account}},
        ("GET", "/dnc"): {"params": {"account": account}},
        ("DELETE", "/dnc/{number}"): {"params": {"account": account}},
        ("POST", "/dnc/import"): {"data": {"account": account}, "files": {"file": CSV_FILE}},
        ("PUT", "/accounts/{account}/frequency-caps"): {"json": {"per_day": 1, "per_week": 2}},
        ("PUT", "/campaigns/{campaign_id}/schedule"): {"json": {"cron": "0 4 1 1 *"}},
        ("POST", "/campaigns/{campaign_id}/rerun"): {"json": {}},
        ("POST", "/campaigns/{campaign_id}/clone"): {"json": {}},
        ("GET", "/campaigns/{campaign_id}/runs/results"): {"params": {"run": 1}},
        ("POST", "/api-keys"): {"json": {"name": "probe", "role": "admin"}},
    }
    extra = bodies.get((method, path), {"json": {}} if method in ("POST", "PUT", "PATCH") else {})
    url = path
    for name in re.findall(r"{(\w+)}", path):
        values = {"campaign_id": ids["campaign"], "account": account, "number": ids["number"],
                  "key_id": ids["key_id"]}
        assert name in values, f"the walk does not know what {{{name}}} in {path} is: teach _request"
        url = url.replace(f"{{{name}}}", str(values[name]))
    return {"method": method, "url": url, **extra}


def _normalised(response: Any, ids: dict[str, Any]) -> tuple[int, str, str]:
    body = response.json()
    message = str(body.get("message", ""))
    for value in sorted((str(value) for value in ids.values()), key=len, reverse=True):  # longest first
        message = message.replace(value, "<id>")
    return response.status_code, body.get("error"), message


def test_every_route_answers_an_operator_of_another_account_as_if_a_had_nothing(
        client: TestClient, world: dict[str, Any], db: psycopg.Connection) -> None:
    key = world["keys"]["operator_b"]
    theirs = {"campaign": world["campaign"], "account": world["a_name"], "number": world["dnc_number"],
              "key_id": world["key_ids"]["operator_a"]}
    missing = {"campaign": MISSING_CAMPAIGN, "account": f"no-such-{secrets.token_hex(3)}",
               "number": "+12125550199", "key_id": MISSING_KEY}
    leaks = [world["marker"], world["auth_id_a"], world["dnc_number"]]
    before = _a_state(db, world)
    walked = []
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path in OPEN_ROUTES or path.startswith("/callbacks/"):
            continue
        for method in operations:
            method = method.upper()
            where = f"{method} {path}"
            walked.append(where)
            probe = client.request(headers=key, **_request(method, path, theirs))
            shown = [leak for leak in leaks if leak in probe.text]
            assert not shown, f"{where} shows A's {shown}: {probe.text[:200]}"
            if (method, path) in LISTINGS and probe.status_code < 300:
                continue
            assert not 200 <= probe.status_code < 300, f"{where}: {probe.status_code} {probe.text[:300]}"
            if ADMIN_ONLY.match(path):
                assert probe.status_code == 403, f"{where}: {probe.status_code} {probe.text[:300]}"
                continue
            control = client.request(headers=key, **_request(method, path, missing))
            assert _normalised(probe, theirs) == _normalised(control, missing), \
                f"{where}: A's object answers {probe.text[:200]}, a missing one {control.text[:200]}"
    assert len(walked) >= 25, walked  # the walk saw the API, not an empty schema
    assert _a_state(db, world) == before

