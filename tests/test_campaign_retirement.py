"""`dialer campaign archive|delete` and POST /campaigns/{id}/archive, DELETE /campaigns/{id} (issue 22): a
stopped campaign is archived (hidden from lists, results kept, its account freed) or deleted (nothing of it
kept but DNC entries); a running one is refused. Real Postgres; CliRunner runs the real Typer app."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from campaigns.accounts import add_account
from campaigns.api_keys import Role, create_api_key
from workers.entrypoints.cli import app

runner = CliRunner()


def _campaign(db: psycopg.Connection, state: str = "completed", *, account: int | None = None) -> int:
    """A campaign of two destinations, one called (answered, 7 s) and one not, on its own account."""
    tag = secrets.token_hex(3)
    if account is None:
        account = add_account(db, name=f"retire-{tag}", provider="plivo", auth_id="MARETIRE", auth_token="t",
                              cps=5, max_concurrent=5)
    row = db.execute("INSERT INTO campaign (name, account_id, caller_id, state) VALUES (%s, %s, "
                     "'+14155550100', %s) RETURNING id", (f"retire-{tag}", account, state)).fetchone()
    assert row is not None
    campaign_id = int(row[0])
    dest = db.execute("INSERT INTO destination (campaign_id, line_no, number, timezone, status, outcome) "
                      "VALUES (%s, 2, '+14155552671', 'UTC', 'done', 'answered'), "
                      "(%s, 3, '+14155552672', 'UTC', 'pending', NULL) RETURNING id",
                      (campaign_id, campaign_id)).fetchall()
    attempt = db.execute("INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, "
                         "status, outcome, duration, lease_expires_at) "
                         "VALUES (%s, %s, %s, 1, 'completed', 'answered', 7, now()) RETURNING id",
                         (dest[0][0], campaign_id, account)).fetchone()
    assert attempt is not None
    db.execute("INSERT INTO call_event (provider, account_id, event_key, kind, attempt_id, payload) "
               "VALUES ('plivo', %s, %s, 'hangup', %s, '{}')", (account, f"ev-c{campaign_id}", attempt[0]))
    return campaign_id


def _account_of(db: psycopg.Connection, campaign_id: int) -> tuple[int, str]:
    row = db.execute("SELECT a.id, a.name FROM campaign c JOIN provider_account a ON a.id = c.account_id "
                     "WHERE c.id = %s", (campaign_id,)).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def test_archive_hides_the_campaign_keeps_its_results_and_frees_its_account(db: psycopg.Connection) -> None:
    campaign_id = _campaign(db)
    _, account = _account_of(db, campaign_id)
    refused = runner.invoke(app, ["account", "remove", account])
    assert refused.exit_code != 0 and "archive or delete those first" in str(refused.exception)

    archived = runner.invoke(app, ["campaign", "archive", str(campaign_id)])
    assert archived.exit_code == 0, archived.output
    assert f"campaign {campaign_id} archived" in archived.stdout
    listed = runner.invoke(app, ["campaign", "list", "--limit", "500", "--json"])
    assert listed.exit_code == 0 and f'"id": {campaign_id},' not in listed.stdout
    with_archived = runner.invoke(app, ["campaign", "list", "--limit", "500", "--archived"])
    assert f"{campaign_id} " in with_archived.stdout and "(archived)" in with_archived.stdout

    removed = runner.invoke(app, ["account", "remove", account])
    assert removed.exit_code == 0, removed.output
    results = runner.invoke(app, ["campaign", "results", str(campaign_id)])
    assert results.exit_code == 0 and "+14155552671" in results.stdout and "answered" in results.stdout
    shown = runner.invoke(app, ["campaign", "show", str(campaign_id)])
    assert shown.exit_code == 0 and account in shown.stdout and "archived" in shown.stdout

    started = runner.invoke(app, ["campaign", "rerun", str(campaign_id)])
    assert started.exit_code != 0 and "is archived" in str(started.exception)
    changed = runner.invoke(app, ["campaign", "set", str(campaign_id), "--cps", "2"])
    assert changed.exit_code != 0 and "is archived" in str(changed.exception)


def test_a_running_campaign_is_neither_archived_nor_deleted(db: psycopg.Connection) -> None:
    campaign_id = _campaign(db, "running")
    for command in (["archive", str(campaign_id)], ["delete", str(campaign_id), "--yes"]):
        result = runner.invoke(app, ["campaign", *command])
        assert result.exit_code != 0 and "is running; pause or cancel it" in str(result.exception)
    assert db.execute("SELECT archived_at FROM campaign WHERE id = %s", (campaign_id,)).fetchone() == (None,)


def test_a_paused_campaign_with_a_call_in_progress_is_not_deleted(db: psycopg.Connection) -> None:
    campaign_id = _campaign(db, "paused")
    db.execute("UPDATE destination SET status = 'ringing' WHERE campaign_id = %s AND outcome IS NULL",
               (campaign_id,))
    result = runner.invoke(app, ["campaign", "delete", str(campaign_id), "--yes"])
    assert result.exit_code != 0 and "1 call(s) in progress" in str(result.exception)


def test_delete_asks_first_then_removes_every_row_of_the_campaign(db: psycopg.Connection) -> None:
    campaign_id = _campaign(db, "cancelled")
    declined = runner.invoke(app, ["campaign", "delete", str(campaign_id)], input="n\n")
    assert declined.exit_code == 1 and "cannot be undone" in declined.stdout
    assert db.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() == (1,)

    deleted = runner.invoke(app, ["campaign", "delete", str(campaign_id)], input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted (2 destinations, 1 attempts)" in deleted.stdout
    for table in ("campaign", "destination", "call_attempt"):
        column = "id" if table == "campaign" else "campaign_id"
        left = db.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (campaign_id,)).fetchone()
        assert left == (0,), table
    events = db.execute("SELECT count(*) FROM call_event WHERE event_key = %s", (f"ev-c{campaign_id}",))
    assert events.fetchone() == (0,)


@pytest.fixture()
def keys(db: psycopg.Connection) -> dict[str, Any]:
    account = add_account(db, name=f"retire-api-{secrets.token_hex(3)}", provider="plivo", auth_id="MAAPI",
                          auth_token="t", cps=5, max_concurrent=5)
    return {"account": account, **{role.value: {"Authorization": "Bearer " + create_api_key(
        db, name=f"retire-{role.value}-{secrets.token_hex(3)}", role=role, accounts=[account]).key}
        for role in (Role.OPERATOR, Role.VIEWER)}}


def test_api_archive_and_delete_need_an_operator_and_a_stopped_campaign(client: Any, db: psycopg.Connection,
                                                                        keys: dict[str, Any]) -> None:
    campaign_id = _campaign(db, "completed", account=keys["account"])
    running = _campaign(db, "running", account=keys["account"])
    assert client.post(f"/campaigns/{campaign_id}/archive", headers=keys["viewer"]).status_code == 403
    assert client.delete(f"/campaigns/{campaign_id}", headers=keys["viewer"]).status_code == 403
    assert client.delete(f"/campaigns/{running}", headers=keys["operator"]).status_code == 409
    assert client.post(f"/campaigns/{running}/archive", headers=keys["operator"]).status_code == 409

    archived = client.post(f"/campaigns/{campaign_id}/archive", headers=keys["operator"])
    assert archived.status_code == 200 and archived.json() == {"id": campaign_id, "archived": True}
    listed = client.get("/campaigns", headers=keys["operator"]).json()["items"]
    assert campaign_id not in [c["id"] for c in listed] and running in [c["id"] for c in listed]
    everything = client.get("/campaigns?archived=true", headers=keys["operator"]).json()["items"]
    assert campaign_id in [c["id"] for c in everything]
    deleted = client.delete(f"/campaigns/{campaign_id}", headers=keys["operator"])
    assert deleted.status_code == 200 and deleted.json()["attempts"] == 1
    assert client.delete(f"/campaigns/{campaign_id}", headers=keys["operator"]).status_code == 404
