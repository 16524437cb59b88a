"""A campaign's ordered accounts (issue 23): an operator gives it a primary and fallbacks, each with its own
caller id or the campaign's, by `dialer campaign set` or PATCH /campaigns/{id}; every rule names the flag or
field and the account; readiness, the provider checks, clone, show, results, the attempt history and
`account remove` all know the whole list. Against the real Postgres."""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from campaigns import control, destination_kinds
from campaigns.accounts import add_account, remove_account
from campaigns.api_keys import Role, create_api_key
from campaigns.clone import clone_campaign
from campaigns.errors import InvalidRequest
from campaigns.results_export import write_results_csv
from campaigns.settings_rules import InvalidSetting
from tests.engine_harness import load_campaign, numbers
from workers.entrypoints.cli import app

runner = CliRunner()
SIP = "sip:desk@pbx.example.com"
CALLER = "+14155550100"


def _account(conn: psycopg.Connection, provider: str = "plivo", tag: str = "fb") -> tuple[int, str]:
    name = f"{tag}-{provider}-{secrets.token_hex(3)}"
    account_id = add_account(conn, name=name, provider=provider, auth_id=f"A{secrets.token_hex(3).upper()}",
                             auth_token="t", cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")
    conn.commit()
    return account_id, name


def _campaign(account_id: int | None = None, phones: list[str] | None = None) -> int:
    return load_campaign(f"fallbacks-{secrets.token_hex(3)}",
                         phones or numbers(2, start=50000 + secrets.randbelow(9000)),
                         account_id=account_id, caller_id=CALLER)


def _fallbacks(conn: psycopg.Connection, campaign_id: int) -> list[tuple[int, int, str | None]]:
    return conn.execute("SELECT position, account_id, caller_id FROM campaign_fallback_account "
                        "WHERE campaign_id = %s ORDER BY position", (campaign_id,)).fetchall()


def _set(campaign_id: int, *args: str) -> Any:
    return runner.invoke(app, ["campaign", "set", str(campaign_id), *args])


@pytest.fixture()
def three(db: psycopg.Connection) -> dict[str, Any]:
    """A plivo primary, a tryvox backup (another provider) and a plivo third, and a campaign on the first."""
    (p, p_name), (b, b_name), (t, t_name) = _account(db), _account(db, "tryvox"), _account(db)
    return {"p": p, "b": b, "t": t, "p_name": p_name, "b_name": b_name, "t_name": t_name,
            "campaign": _campaign(p)}


# --- the CLI ---------------------------------------------------------------------------------------------


def test_cli_sets_the_primary_fallbacks_their_caller_ids_and_routing(db: psycopg.Connection,
                                                                     three: dict[str, Any]) -> None:
    c = three["campaign"]
    done = _set(c, "--account", three["p_name"], "--fallback-account", three["b_name"],
                "--fallback-account", str(three["t"]),
                "--account-caller-id", f"{three['b_name']}=+1 415 555 0101", "--routing", "split")
    assert done.exit_code == 0, done.output
    assert _fallbacks(db, c) == [(1, three["b"], "+14155550101"), (2, three["t"], None)]
    assert db.execute("SELECT account_id, caller_id, routing FROM campaign WHERE id = %s",
                      (c,)).fetchone() == (three["p"], CALLER, "split")
    shown = runner.invoke(app, ["campaign", "show", str(c), "--json"])
    settings = json.loads(shown.stdout)["settings"]
    assert settings["routing"] == "split"
    assert [(a["account"], a["role"], a["caller_id"]) for a in settings["accounts"]] == [
        (three["p_name"], "primary", CALLER), (three["b_name"], "fallback", "+14155550101"),
        (three["t_name"], "fallback", CALLER)]
    table = " ".join(runner.invoke(app, ["campaign", "show", str(c)], env={"COLUMNS": "250"}).stdout.split())
    assert (f"1. {three['b_name']} (caller ID +14155550101); "
            f"2. {three['t_name']} (caller ID {CALLER})") in table
    assert "routing split" in table
    # The primary's own caller id is the campaign's; a caller id alone changes a kept fallback's.
    again = _set(c, "--account-caller-id", f"{three['p_name']}=+14155550102",
                 "--account-caller-id", f"{three['t_name']}=+14155550103")
    assert again.exit_code == 0, again.output
    assert db.execute("SELECT caller_id FROM campaign WHERE id = %s", (c,)).fetchone() == ("+14155550102",)
    assert _fallbacks(db, c) == [(1, three["b"], "+14155550101"), (2, three["t"], "+14155550103")]
    dropped = _set(c, "--no-fallbacks", "--routing", "failover")
    assert dropped.exit_code == 0, dropped.output
    assert _fallbacks(db, c) == []


@pytest.mark.parametrize(("args", "field", "says"), [
    (["--fallback-account", "{b}", "--fallback-account", "{b}"], "--fallback-account",
     "'{b}' is named twice"),
    (["--fallback-account", "{b}", "--fallback-account", "{b_id}"], "--fallback-account",
     "'{b_id}' is named twice (as '{b}' before)"),
    (["--account", "{p}", "--fallback-account", "{p}"], "--fallback-account", "'{p}' is the primary account"),
    (["--fallback-account", "{p}"], "--fallback-account", "'{p}' is the primary account ('{p}')"),
    (["--fallback-account", "no-such-account"], "--fallback-account",
     "no provider account 'no-such-account'"),
    (["--account", "no-such-account"], "--account", "no provider account 'no-such-account'"),
    (["--fallback-account", "{b}", "--account-caller-id", "{t}=+14155550101"], "--account-caller-id",
     "'{t}' is not one of this campaign's accounts ({p}, {b})"),
    (["--account-caller-id", "nobody=+14155550101"], "--account-caller-id", "'nobody' is not one of"),
    (["--fallback-account", "{b}", "--account-caller-id", "{b}=12345"], "--account-caller-id",
     "{b}: caller ID '12345' is not a valid number"),
    (["--account-caller-id", "{p}=+14155550109", "--caller-id", "+14155550108"], "--account-caller-id",
     "is the primary's caller id"),
    (["--routing", "round-robin"], "routing", "failover or split, not 'round-robin'"),
])
def test_cli_refuses_each_bad_list_naming_the_flag_and_the_account(
        db: psycopg.Connection, three: dict[str, Any], args: list[str], field: str, says: str) -> None:
    names = {"p": three["p_name"], "b": three["b_name"], "t": three["t_name"], "b_id": str(three["b"])}
    c = three["campaign"]
    refused = _set(c, *[a.format(**names) for a in args])
    assert isinstance(refused.exception, InvalidSetting), refused.output
    assert refused.exception.field == field
    assert says.format(**names) in refused.exception.message
    assert _fallbacks(db, c) == []
    assert db.execute("SELECT account_id, caller_id FROM campaign WHERE id = %s", (c,)).fetchone() == \
        (three["p"], CALLER)


def test_cli_refuses_a_primary_that_is_already_a_fallback_unless_the_fallbacks_are_given_again(
        db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = three["campaign"]
    assert _set(c, "--fallback-account", three["t_name"]).exit_code == 0
    refused = _set(c, "--account", three["t_name"])
    assert isinstance(refused.exception, InvalidSetting) and refused.exception.field == "--account"
    assert f"'{three['t_name']}' is fallback 1 of this campaign" in refused.exception.message
    swapped = _set(c, "--account", three["t_name"], "--fallback-account", three["p_name"])
    assert swapped.exit_code == 0, swapped.output
    assert db.execute("SELECT account_id FROM campaign WHERE id = %s", (c,)).fetchone() == (three["t"],)
    assert _fallbacks(db, c) == [(1, three["p"], None)]


def test_no_fallbacks_with_a_fallback_is_a_usage_error(three: dict[str, Any]) -> None:
    refused = _set(three["campaign"], "--no-fallbacks", "--fallback-account", three["b_name"])
    assert refused.exit_code == 2 and "--no-fallbacks" in refused.output


def test_fallbacks_without_a_primary_are_refused(db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = _campaign(None)
    refused = _set(c, "--fallback-account", three["b_name"])
    assert isinstance(refused.exception, InvalidSetting) and refused.exception.field == "--fallback-account"
    assert "a campaign with no account cannot have fallbacks" in refused.exception.message
    assert _fallbacks(db, c) == []


# --- provider checks and readiness, for every account ------------------------------------------------------


def test_a_fallback_lacking_an_option_the_campaign_sets_is_refused_naming_it(
        db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = three["campaign"]
    assert _set(c, "--caller-name", "Acme").exit_code == 0  # plivo takes it; tryvox does not
    refused = _set(c, "--fallback-account", three["b_name"])
    assert isinstance(refused.exception, InvalidSetting) and refused.exception.field == "--fallback-account"
    assert f"'{three['b_name']}': provider_options.caller_name: tryvox does not take caller_name" in \
        refused.exception.message
    assert _fallbacks(db, c) == []
    # Set while it is a fallback: the option is refused naming the fallback.
    db.execute("UPDATE campaign SET provider_options = '{}' WHERE id = %s", (c,))
    db.commit()
    assert _set(c, "--fallback-account", three["b_name"]).exit_code == 0
    later = _set(c, "--caller-name", "Acme")
    assert isinstance(later.exception, InvalidSetting)
    assert later.exception.field == "provider_options.caller_name"
    assert f"fallback account '{three['b_name']}'" in later.exception.message


def test_readiness_names_a_fallback_that_lacks_an_option(db: psycopg.Connection,
                                                         three: dict[str, Any]) -> None:
    c = three["campaign"]
    assert _set(c, "--fallback-account", three["b_name"]).exit_code == 0
    # As a campaign changed before these checks: the option written directly.
    db.execute("UPDATE campaign SET provider_options = provider_options || '{\"caller_name\": \"Acme\"}', "
               "window_start = '00:00', window_end = '00:00' WHERE id = %s", (c,))
    db.commit()
    with pytest.raises(InvalidRequest, match=re.escape(
            f"campaign {c}'s fallback 1, account '{three['b_name']}' (tryvox): provider_options.caller_name: "
            "tryvox does not take caller_name")):
        control.start(db, c)
    db.rollback()
    assert db.execute("SELECT state FROM campaign WHERE id = %s", (c,)).fetchone() == ("draft",)


@pytest.fixture()
def plivo_dials_sip() -> Iterator[None]:
    before = destination_kinds.destination_kinds("plivo")
    destination_kinds.register_destination_kinds("plivo", {"tel", "sip"})
    yield
    destination_kinds.register_destination_kinds("plivo", before or {"tel"})


def test_a_fallback_that_cannot_dial_a_sip_destination_is_refused_and_not_ready(
        db: psycopg.Connection, three: dict[str, Any], plivo_dials_sip: None) -> None:
    c = _campaign(three["p"], ["+14155552671", SIP])
    refused = _set(c, "--fallback-account", three["t_name"], "--fallback-account", three["b_name"])
    assert isinstance(refused.exception, InvalidSetting) and refused.exception.field == "--fallback-account"
    assert (f"'{three['b_name']}': campaign {c} holds a destination tryvox cannot dial "
            f"(tryvox dials only E.164 numbers, not SIP URIs), e.g. line 3: {SIP}") in \
        refused.exception.message
    assert _fallbacks(db, c) == []
    # Written directly (as before this check), start names the fallback.
    db.execute("INSERT INTO campaign_fallback_account (campaign_id, position, account_id) VALUES (%s, 1, %s)",
               (c, three["b"]))
    db.commit()
    with pytest.raises(InvalidRequest, match=re.escape(
            f"campaign {c}'s fallback 1, account '{three['b_name']}' (tryvox): campaign {c} holds a "
            "destination tryvox cannot dial")):
        control.start(db, c)
    db.rollback()


# --- the API ---------------------------------------------------------------------------------------------


def test_api_patch_takes_the_list_and_get_shows_it(client: TestClient, auth: dict[str, str],
                                                   db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = three["campaign"]
    patched = client.patch(f"/campaigns/{c}", headers=auth, json={
        "accounts": [three["p_name"], {"account": three["b_name"], "caller_id": "+14155550104"}, three["t"]],
        "routing": "split"})
    assert patched.status_code == 200, patched.text
    settings = patched.json()["settings"]
    assert settings["routing"] == "split" and settings["account_id"] == three["p"]
    assert settings["accounts"] == [
        {"account": three["p_name"], "caller_id": CALLER, "role": "primary"},
        {"account": three["b_name"], "caller_id": "+14155550104", "role": "fallback"},
        {"account": three["t_name"], "caller_id": CALLER, "role": "fallback"}]
    assert client.get(f"/campaigns/{c}", headers=auth).json()["settings"]["accounts"] == settings["accounts"]
    # `account` alone changes the primary as before and keeps the fallbacks.
    moved = client.patch(f"/campaigns/{c}", headers=auth, json={"account": three["b_name"]})
    assert moved.status_code == 422 and moved.json()["fields"][0]["field"] == "account"
    only = client.patch(f"/campaigns/{c}", headers=auth, json={"accounts": [three["t_name"]]})
    assert only.status_code == 200, only.text
    assert [a["account"] for a in only.json()["settings"]["accounts"]] == [three["t_name"]]
    assert _fallbacks(db, c) == []


@pytest.mark.parametrize(("accounts", "field", "says"), [
    (["{p}", "{b}", "{b}"], "accounts.2", "'{b}' is named twice"),
    (["{p}", "{p}"], "accounts.1", "'{p}' is the primary account"),
    (["{p}", "no-such-account"], "accounts.1", "no provider account 'no-such-account'"),
    (["{p}", {"account": "{b}", "caller_id": "12345"}], "accounts.1.caller_id", "caller ID '12345' is not"),
])
def test_api_patch_refuses_each_bad_list_naming_the_field(
        client: TestClient, auth: dict[str, str], three: dict[str, Any], accounts: list[Any], field: str,
        says: str) -> None:
    names = {"p": three["p_name"], "b": three["b_name"]}
    body = [a.format(**names) if isinstance(a, str) else {**a, "account": a["account"].format(**names)}
            for a in accounts]
    refused = client.patch(f"/campaigns/{three['campaign']}", headers=auth, json={"accounts": body})
    assert refused.status_code == 422, refused.text
    assert refused.json()["fields"][0]["field"] == field
    assert says.format(**names) in refused.json()["message"]


def test_api_patch_refuses_account_and_accounts_together_and_a_bad_routing(
        client: TestClient, auth: dict[str, str], three: dict[str, Any]) -> None:
    both = client.patch(f"/campaigns/{three['campaign']}", headers=auth,
                        json={"account": three["p_name"], "accounts": [three["p_name"]]})
    assert both.status_code == 422 and "not both" in both.json()["message"]
    routing = client.patch(f"/campaigns/{three['campaign']}", headers=auth, json={"routing": "random"})
    assert routing.status_code == 422 and routing.json()["fields"][0]["field"] == "routing"


def test_a_key_naming_a_fallback_outside_its_reach_gets_the_unknown_account_422(
        client: TestClient, db: psycopg.Connection, three: dict[str, Any]) -> None:
    key = {"Authorization": "Bearer " + create_api_key(db, name=f"fb-{secrets.token_hex(3)}",
                                                       role=Role.OPERATOR, accounts=[three["p"]]).key}
    db.commit()
    c = three["campaign"]
    theirs = client.patch(f"/campaigns/{c}", headers=key,
                          json={"accounts": [three["p_name"], three["b_name"]]})
    missing_name = f"no-such-{secrets.token_hex(3)}"
    missing = client.patch(f"/campaigns/{c}", headers=key, json={"accounts": [three["p_name"], missing_name]})
    assert theirs.status_code == missing.status_code == 422
    assert theirs.json()["fields"][0]["field"] == missing.json()["fields"][0]["field"] == "accounts.1"
    assert theirs.json()["message"].replace(three["b_name"], "X") == \
        missing.json()["message"].replace(missing_name, "X")
    assert _fallbacks(db, c) == []
    # A fallback an admin set outside the key's reach is not shown to it.
    db.execute("INSERT INTO campaign_fallback_account (campaign_id, position, account_id) VALUES (%s, 1, %s)",
               (c, three["b"]))
    db.commit()
    seen = client.get(f"/campaigns/{c}", headers=key).json()["settings"]["accounts"]
    assert [a["account"] for a in seen] == [three["p_name"]]


# --- clone, account remove, results, the attempt history --------------------------------------------------


def test_clone_copies_the_fallbacks_and_the_routing(db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = three["campaign"]
    assert _set(c, "--fallback-account", three["b_name"], "--account-caller-id",
                f"{three['b_name']}=+14155550105", "--routing", "split").exit_code == 0
    copy = clone_campaign(db, c)
    assert _fallbacks(db, copy) == [(1, three["b"], "+14155550105")]
    assert db.execute("SELECT routing FROM campaign WHERE id = %s", (copy,)).fetchone() == ("split",)


def test_an_account_that_is_a_fallback_is_not_removed(db: psycopg.Connection, three: dict[str, Any]) -> None:
    c = three["campaign"]
    assert _set(c, "--fallback-account", three["b_name"]).exit_code == 0
    refused = runner.invoke(app, ["account", "remove", three["b_name"]])
    assert isinstance(refused.exception, InvalidRequest)
    assert f"is a fallback account of campaign(s) {c}" in str(refused.exception)
    with pytest.raises(InvalidRequest, match=f"campaign\\(s\\) {c};"):
        remove_account(db, three["b"])
    db.rollback()
    assert db.execute("SELECT count(*) FROM provider_account WHERE id = %s", (three["b"],)).fetchone() == (1,)
    assert _set(c, "--no-fallbacks").exit_code == 0
    remove_account(db, three["b"])
    db.commit()


def _attempt(db: psycopg.Connection, campaign_id: int, account_id: int, number: str, attempt_no: int,
             outcome: str) -> None:
    db.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, call_uuid, "
        "outcome, sent_at, error_message, lease_expires_at) SELECT id, campaign_id, %s, %s, 'completed', %s, "
        "%s, now(), %s, now() FROM destination WHERE campaign_id = %s AND number = %s",
        (account_id, attempt_no, str(uuid.uuid4()), outcome, "refused" if outcome == "failed" else None,
         campaign_id, number))


def test_results_and_the_attempt_history_name_the_account_of_each_attempt(
        client: TestClient, auth: dict[str, str], db: psycopg.Connection, three: dict[str, Any]) -> None:
    first, second = numbers(2, start=60000 + secrets.randbelow(9000))
    c = _campaign(three["p"], [first, second])
    _attempt(db, c, three["p"], first, 1, "failed")
    _attempt(db, c, three["b"], first, 2, "answered")
    db.commit()
    out = io.StringIO()
    with db.transaction():  # the export reads through a server-side cursor
        write_results_csv(db, c, out)
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows[first]["call_account"] == three["b_name"] and rows[first]["call_outcome"] == "answered"
    assert rows[second]["call_account"] == ""
    shown = runner.invoke(app, ["campaign", "attempts", str(c), "--number", first, "--json"])
    assert shown.exit_code == 0, shown.output
    assert [(a["attempt_no"], a["account"], a["outcome"], a["error"]) for a in json.loads(shown.stdout)] == [
        (1, three["p_name"], "failed", "refused"), (2, three["b_name"], "answered", None)]
    table = " ".join(runner.invoke(app, ["campaign", "attempts", str(c), "--number", first],
                                   env={"COLUMNS": "250"}).stdout.split())
    assert three["p_name"] in table and three["b_name"] in table
    api = client.get(f"/campaigns/{c}/attempts", headers=auth, params={"number": first})
    assert api.status_code == 200, api.text
    assert [a["account"] for a in api.json()] == [three["p_name"], three["b_name"]]
    unknown = client.get(f"/campaigns/{c}/attempts", headers=auth, params={"number": "+19999999999"})
    assert unknown.status_code == 404


def test_the_console_campaign_page_shows_each_accounts_caller_id_and_the_routing(
        db: psycopg.Connection, three: dict[str, Any]) -> None:
    from workers.entrypoints.api.app import create_app

    c = three["campaign"]
    assert _set(c, "--fallback-account", three["b_name"], "--account-caller-id",
                f"{three['b_name']}=+14155550106", "--routing", "split").exit_code == 0
    key = create_api_key(db, name=f"fb-console-{secrets.token_hex(3)}", role=Role.ADMIN).key
    db.commit()
    with TestClient(create_app(apply_events=False), base_url="http://127.0.0.1") as console:
        signed = console.post("/ui/login", data={"key": key, "next": "/ui/campaigns"}, follow_redirects=False)
        assert signed.status_code == 303
        page = console.get(f"/ui/campaigns/{c}").text
    rows = re.search(r'<table id="campaign-accounts">(.*?)</table>', page, re.DOTALL)
    assert rows is not None
    cells = re.findall(r'<td class="caller-id">([^<]*)</td>', rows.group(1))
    assert cells == [CALLER, "+14155550106"]
    assert re.search(r'id="routing">Routing: <b>split</b>', page)
