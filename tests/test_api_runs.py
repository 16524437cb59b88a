"""Runs on the HTTP API (in-process app, real Postgres): schedule, runs, rerun, clone, results per run."""

from __future__ import annotations

import csv
import io
import secrets

import psycopg
from fastapi.testclient import TestClient

from campaigns.accounts import add_account
from campaigns.results_schema import header
from tests.engine_harness import load_campaign, numbers, prepare_and_start

# `client` and `auth` are the shared API fixtures in tests/conftest.py.


def _completed_campaign(db: psycopg.Connection) -> tuple[int, list[str]]:
    """A campaign whose run 1 ended: two busy, one unknown, one answered, one on the DNC list."""
    account = add_account(db, name=f"runs-{secrets.token_hex(3)}", provider="plivo", auth_id="MAX",
                          auth_token="t", cps=5, max_concurrent=5)
    phones = numbers(5, start=int(secrets.randbelow(5000)) + 20000)
    campaign_id = load_campaign(f"api-runs-{secrets.token_hex(3)}", phones)
    prepare_and_start(db, campaign_id, account, start=False)
    for phone, status, outcome in zip(phones, ["done", "done", "unknown", "done", "dnc"],
                                      ["busy", "busy", "unknown", "answered", "dnc"], strict=True):
        db.execute("UPDATE destination SET status = %s, outcome = %s, attempts_made = 1 "
                   "WHERE campaign_id = %s AND number = %s", (status, outcome, campaign_id, phone))
    db.execute("UPDATE campaign SET state = 'completed' WHERE id = %s", (campaign_id,))
    db.commit()
    return campaign_id, phones


def test_schedule_is_stored_and_a_bad_cron_names_the_field(
    client: TestClient, auth: dict[str, str], db: psycopg.Connection
) -> None:
    campaign_id, _ = _completed_campaign(db)
    bad = client.put(f"/campaigns/{campaign_id}/schedule", headers=auth, json={"cron": "0 10 * *"})
    assert bad.status_code == 422 and "five fields" in bad.json()["message"]
    bad_only = client.put(f"/campaigns/{campaign_id}/schedule", headers=auth,
                          json={"cron": "0 10 * * 1-5 Europe/London", "only": ["bussy"]})
    assert bad_only.status_code == 422 and "bussy" in bad_only.json()["message"]
    good = client.put(f"/campaigns/{campaign_id}/schedule", headers=auth,
                      json={"cron": "0 10 * * 1-5 Europe/London", "only": ["no_answer", "busy"],
                            "run_for": "4h"})
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["timezone"] == "Europe/London" and body["only_outcomes"] == ["busy", "no_answer"]
    assert body["run_for_s"] == 4 * 3600 and body["next_run_at"]
    assert client.get(f"/campaigns/{campaign_id}/schedule", headers=auth).json() == body
    assert client.delete(f"/campaigns/{campaign_id}/schedule", headers=auth).status_code == 204
    assert client.get(f"/campaigns/{campaign_id}/schedule", headers=auth).status_code == 404


def test_rerun_takes_only_the_chosen_outcomes_and_never_a_dnc_destination(
    client: TestClient, auth: dict[str, str], db: psycopg.Connection
) -> None:
    campaign_id, phones = _completed_campaign(db)
    started = client.post(f"/campaigns/{campaign_id}/rerun", headers=auth, json={"only": ["busy", "unknown"]})
    assert started.status_code == 201, started.text
    assert started.json() == {"campaign_id": campaign_id, "run_no": 2, "destinations": 3}
    rows = dict(db.execute("SELECT number, status FROM destination WHERE campaign_id = %s",
                           (campaign_id,)).fetchall())
    assert [rows[p] for p in phones] == ["pending", "pending", "pending", "done", "dnc"]
    again = client.post(f"/campaigns/{campaign_id}/rerun", headers=auth, json={})
    assert again.status_code == 409 and "still in run 2" in again.json()["message"]
    listed = client.get(f"/campaigns/{campaign_id}/runs", headers=auth).json()
    assert [(r["run_no"], r["trigger"], r["destinations"]) for r in listed] == [(2, "rerun", 3)]
    results = client.get(f"/campaigns/{campaign_id}/runs/results", headers=auth, params={"run": 2})
    assert results.status_code == 200
    assert next(csv.reader(io.StringIO(results.text))) == list(header(("phone", "name")))  # upload, then call


def test_clone_copies_settings_and_destinations_as_a_draft(
    client: TestClient, auth: dict[str, str], db: psycopg.Connection
) -> None:
    campaign_id, phones = _completed_campaign(db)
    db.execute("UPDATE campaign SET state = 'cancelled' WHERE id = %s", (campaign_id,))
    refused = client.post(f"/campaigns/{campaign_id}/rerun", headers=auth, json={})
    assert refused.status_code == 409 and "clone" in refused.json()["message"]
    cloned = client.post(f"/campaigns/{campaign_id}/clone", headers=auth, json={"name": "again"})
    assert cloned.status_code == 201
    new_id = cloned.json()["id"]
    row = db.execute("SELECT name, state, account_id = (SELECT account_id FROM campaign WHERE id = %s), "
                     "rows_loaded FROM campaign WHERE id = %s", (campaign_id, new_id)).fetchone()
    assert row == ("again", "draft", True, len(phones))
    statuses = db.execute("SELECT DISTINCT status FROM destination WHERE campaign_id = %s",
                          (new_id,)).fetchall()
    assert statuses == [("pending",)]


def test_an_upload_with_a_message_reports_and_lists_rows_missing_a_variable(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = b"phone,first_name\n+14155552671,Ann\n+14155552672,\n"
    created = client.post("/campaigns", headers=auth, data={"name": "warn", "message": "Hi {first_name}"},
                          files={"file": ("people.csv", body, "text/csv")})
    assert created.status_code == 201 and created.json()["rows_with_warnings"] == 1
    listed = client.get(f"/campaigns/{created.json()['campaign_id']}/warnings", headers=auth).json()
    assert [(w["line"], w["reason"]) for w in listed] == [(3, "missing_variable")]
    bad = client.post("/campaigns", headers=auth, data={"name": "bad", "message": "Hi {first_name"},
                      files={"file": ("people.csv", body, "text/csv")})
    assert bad.status_code == 422 and "message template" in bad.json()["message"]
