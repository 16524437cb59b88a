"""The operators' campaign API in-process (TestClient runs the real app and lifespan) on the real Postgres."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import PoolTimeout

from campaigns import results_export
from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key, revoke_api_key
from campaigns.db import unavailable
from campaigns.errors import BadInputFile, InvalidRequest, NotFound, ServiceUnavailable
from campaigns.results_schema import CALL_FIELDS
from workers.entrypoints.api import deps
from workers.entrypoints.api.deps import as_api_error

GOOD_CSV = (b"phone,first_name\n"
            b"+14155552671,Ann\n"
            b"12345,Bo\n"
            b"(415) 555-2672,Cy\n"
            b"+14155552671,Ann again\n"
            b"+442079460018,Di\n")
UNKNOWN_ID = 987_654_321


@pytest.fixture(scope="module")
def account_name(database_url: str) -> str:
    name = f"acct-{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_account(conn, name=name, provider="plivo", auth_id="MAXXXX", auth_token="secret", cps=5,
                    max_concurrent=10)
    return name


def unique_name() -> str:
    return f"api-{secrets.token_hex(4)}"


def upload(client: TestClient, auth: dict[str, str], data: bytes, **form: str) -> Any:
    form.setdefault("name", unique_name())
    return client.post("/campaigns", headers=auth, data=form,
                       files={"file": ("people.csv", data, "text/csv")})


def create(client: TestClient, auth: dict[str, str], data: bytes = GOOD_CSV, **form: str) -> int:
    response = upload(client, auth, data, **form)
    assert response.status_code == 201, response.text
    return int(response.json()["campaign_id"])


def campaigns_named(db: psycopg.Connection, name: str) -> int:
    row = db.execute("SELECT count(*) FROM campaign WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def field_names(body: dict[str, Any]) -> set[str]:
    return {f["field"] for f in body.get("fields", [])}


# --- upload ---------------------------------------------------------------------------------------


def test_upload_creates_a_draft_and_reports_every_row(client: TestClient, auth: dict[str, str],
                                                      db: psycopg.Connection) -> None:
    name = unique_name()
    response = upload(client, auth, GOOD_CSV, name=name)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/campaigns/{body['campaign_id']}"
    assert (body["name"], body["state"], body["rows_total"], body["rows_loaded"], body["rows_rejected"]) == \
        (name, "draft", 5, 3, 2)
    assert body["rejects_by_reason"] == {"duplicate": 1, "not_possible": 1}
    assert body["phone_column"] == "phone" and body["columns"] == ["phone", "first_name"]
    stored = db.execute("SELECT state, rows_loaded FROM campaign WHERE id = %s", (body["campaign_id"],))
    assert stored.fetchone() == ("draft", 3)
    numbers = db.execute("SELECT number FROM destination WHERE campaign_id = %s ORDER BY line_no",
                         (body["campaign_id"],)).fetchall()
    assert [n for (n,) in numbers] == ["+14155552671", "+14155552672", "+442079460018"]


def test_upload_takes_the_form_options(client: TestClient, auth: dict[str, str], account_name: str,
                                       db: psycopg.Connection) -> None:
    data = b"name;mobile\nAnn;020 7946 0018\nBo;+14155552671\n"
    campaign_id = create(client, auth, data, phone_column="mobile", default_region="GB",
                         account=account_name, caller_id="020 7946 0019", timezone="Europe/London")
    row = db.execute("SELECT a.name, c.caller_id, c.default_region FROM campaign c "
                     "JOIN provider_account a ON a.id = c.account_id WHERE c.id = %s", (campaign_id,))
    assert row.fetchone() == (account_name, "+442079460019", "GB")
    numbers = db.execute("SELECT number FROM destination WHERE campaign_id = %s ORDER BY line_no",
                         (campaign_id,)).fetchall()
    assert numbers == [("+442079460018",), ("+14155552671",)]


@pytest.mark.parametrize(("data", "reason", "words"), [
    (b"", "empty_file", "empty"),
    (b"phone\n", "empty_file", "no data rows"),
    (b"name,city\nAnn,Paris\nBo,Lyon\n", "no_phone_column", "name, city"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "binary_content", "binary"),
])
def test_a_bad_file_is_refused_with_its_reason_and_nothing_is_stored(
        client: TestClient, auth: dict[str, str], db: psycopg.Connection, data: bytes, reason: str,
        words: str) -> None:
    name = unique_name()
    response = upload(client, auth, data, name=name)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == reason
    assert words in body["message"] and "nothing was stored" in body["message"]
    assert campaigns_named(db, name) == 0


def test_a_file_bad_deep_inside_stores_nothing(client: TestClient, auth: dict[str, str],
                                               db: psycopg.Connection) -> None:
    # Past the 64 KiB the reader sniffs: the campaign row and the COPY have begun when the NUL is met.
    rows = b"".join(b"+1415555%04d\n" % i for i in range(10_000))
    name = unique_name()
    response = upload(client, auth, b"phone\n" + rows + b"+14155559999\x00\n", name=name)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "binary_content" and "line 10002" in response.json()["message"]
    assert campaigns_named(db, name) == 0


@pytest.mark.parametrize(("form", "field"), [
    ({"account": "no-such-account"}, "account"),
    ({"default_region": "XX"}, "default_region"),
    ({"caller_id": "12"}, "caller_id"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"name": ""}, "name"),
])
def test_bad_form_fields_are_named_and_nothing_is_stored(client: TestClient, auth: dict[str, str],
                                                         db: psycopg.Connection, form: dict[str, str],
                                                         field: str) -> None:
    name = form.setdefault("name", unique_name())
    response = upload(client, auth, GOOD_CSV, **form)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_field" and field_names(body) == {field}
    assert field in body["message"]
    if name:
        assert campaigns_named(db, name) == 0


def test_an_upload_without_a_file_names_the_file_field(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/campaigns", headers=auth, data={"name": unique_name()})
    assert response.status_code == 422
    assert field_names(response.json()) == {"file"}


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/campaigns"), ("GET", "/campaigns/1"), ("GET", "/campaigns/1/rejects"),
    ("GET", "/campaigns/1/results"), ("PATCH", "/campaigns/1"), ("POST", "/campaigns"),
    ("POST", "/campaigns/1/start"), ("POST", "/campaigns/1/pause"), ("POST", "/campaigns/1/resume"),
    ("POST", "/campaigns/1/cancel"),
])
def test_every_campaign_route_refuses_a_request_without_a_key(client: TestClient, method: str,
                                                              path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer dlr_wrong", "Bearer ", "Basic dXNlcjpwYXNz", "dlr_nobearer"])
def test_a_wrong_key_is_refused(client: TestClient, header: str) -> None:
    response = client.get("/campaigns", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_revoked_key_is_refused_and_its_upload_stores_nothing(client: TestClient,
                                                                 db: psycopg.Connection) -> None:
    new = create_api_key(db, name="soon-revoked", role="admin")
    headers = {"Authorization": f"Bearer {new.key}"}
    assert client.get("/campaigns", headers=headers).status_code == 200
    revoke_api_key(db, new.id)
    assert client.get("/campaigns", headers=headers).status_code == 401
    name = unique_name()
    assert upload(client, headers, GOOD_CSV, name=name).status_code == 401
    assert campaigns_named(db, name) == 0


def test_health_and_callbacks_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.post("/callbacks/plivo/1/hangup").status_code != 401


# --- reads ----------------------------------------------------------------------------------------


def test_list_shows_state_and_counts_newest_first(client: TestClient, auth: dict[str, str]) -> None:
    older, newer = create(client, auth), create(client, auth)
    response = client.get("/campaigns", headers=auth, params={"limit": 500})
    assert response.status_code == 200
    items = response.json()["items"]
    ids = [item["id"] for item in items]
    assert ids.index(newer) < ids.index(older)
    item = next(i for i in items if i["id"] == older)
    counts = (item["state"], item["rows_total"], item["rows_loaded"], item["rows_rejected"])
    assert counts == ("draft", 5, 3, 2)
    drafts = client.get("/campaigns", headers=auth, params={"state": "draft", "limit": 500}).json()["items"]
    assert {i["state"] for i in drafts} == {"draft"} and older in {i["id"] for i in drafts}
    running = client.get("/campaigns", headers=auth, params={"state": "running", "limit": 500})
    running = running.json()["items"]
    assert older not in {i["id"] for i in running} and all(i["state"] == "running" for i in running)


@pytest.mark.parametrize(("params", "field"), [({"state": "sleeping"}, "state"), ({"limit": 0}, "limit"),
                                               ({"offset": -1}, "offset")])
def test_list_names_a_bad_query_parameter(client: TestClient, auth: dict[str, str], params: dict[str, Any],
                                          field: str) -> None:
    response = client.get("/campaigns", headers=auth, params=params)
    assert response.status_code == 422
    assert field_names(response.json()) == {field}
    assert response.json()["fields"][0]["location"] == "query"


def test_get_shows_destinations_per_status_attempts_and_settings(client: TestClient, auth: dict[str, str],
                                                                 db: psycopg.Connection) -> None:
    campaign_id = create(client, auth)
    db.execute("UPDATE campaign SET throttled_count = 4 WHERE id = %s", (campaign_id,))
    body = client.get(f"/campaigns/{campaign_id}", headers=auth).json()
    counts = (body["id"], body["state"], body["rows_loaded"], body["rows_rejected"])
    assert counts == (campaign_id, "draft", 3, 2)
    assert body["destinations_by_status"] == {"pending": 3}
    assert body["destinations_finished"] == 0
    assert body["attempts"] == 0 and body["attempts_by_outcome"] == {}
    assert body["throttled"] == 4
    assert body["settings"]["window"] == "09:00-21:00"
    assert body["settings"]["days"] == [1, 2, 3, 4, 5, 6, 7]


def test_rejects_are_listed_by_line_with_value_and_reason(client: TestClient, auth: dict[str, str]) -> None:
    campaign_id = create(client, auth)
    page = client.get(f"/campaigns/{campaign_id}/rejects", headers=auth).json()
    assert page["total"] == 2
    assert [(r["line"], r["raw_value"], r["reason"]) for r in page["items"]] == [
        (3, "12345", "not_possible"), (5, "+14155552671", "duplicate")]
    assert "line 2" in page["items"][1]["detail"]
    only = client.get(f"/campaigns/{campaign_id}/rejects", headers=auth,
                      params={"reason": "duplicate"}).json()
    assert only["total"] == 1 and [r["line"] for r in only["items"]] == [5]
    second = client.get(f"/campaigns/{campaign_id}/rejects", headers=auth,
                        params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 2 and [r["line"] for r in second["items"]] == [5]


def test_rejects_name_an_unknown_reason(client: TestClient, auth: dict[str, str]) -> None:
    campaign_id = create(client, auth)
    response = client.get(f"/campaigns/{campaign_id}/rejects", headers=auth, params={"reason": "ugly"})
    assert response.status_code == 422 and field_names(response.json()) == {"reason"}


def test_results_csv_has_every_destination_with_its_last_attempt(
        client: TestClient, auth: dict[str, str], account_name: str, db: psycopg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_export, "FETCH_ROWS", 2)  # several chunks from a 3-row campaign
    campaign_id = create(client, auth)
    account_id = db.execute("SELECT id FROM provider_account WHERE name = %s", (account_name,)).fetchone()
    first = db.execute("SELECT id FROM destination WHERE campaign_id = %s AND line_no = 2",
                       (campaign_id,)).fetchone()
    assert account_id and first
    for attempt_no, outcome, duration in ((1, "busy", None), (2, "answered", 42)):
        db.execute("INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, "
                   "request_uuid, call_uuid, outcome, duration, lease_expires_at) "
                   "VALUES (%s, %s, %s, %s, 'completed', %s, %s, %s, %s, now())",
                   (first[0], campaign_id, account_id[0], attempt_no, f"req-{attempt_no}", str(uuid.uuid4()),
                    outcome, duration))
    db.execute("UPDATE destination SET status = 'done', outcome = 'answered', attempts_made = 2 "
               "WHERE id = %s", (first[0],))

    response = client.get(f"/campaigns/{campaign_id}/results", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f"campaign-{campaign_id}-results.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    # The upload's own columns first (the phone column as dialed), then the call's fields.
    assert list(rows[0]) == ["phone", "first_name", *CALL_FIELDS]
    assert [(r["phone"], r["first_name"]) for r in rows] == [
        ("+14155552671", "Ann"), ("+14155552672", "Cy"), ("+442079460018", "Di")]
    assert [(r["line"], r["number"], r["status"]) for r in rows] == [
        ("2", "+14155552671", "done"), ("4", "+14155552672", "pending"), ("6", "+442079460018", "pending")]
    assert (rows[0]["outcome"], rows[0]["attempts"], rows[0]["request_uuid"], rows[0]["duration"]) == \
        ("answered", "2", "req-2", "42")
    assert rows[1]["request_uuid"] == "" and rows[1]["attempts"] == "0"


# --- PATCH ----------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_given(client: TestClient, auth: dict[str, str],
                                             account_name: str) -> None:
    campaign_id = create(client, auth)
    response = client.patch(f"/campaigns/{campaign_id}", headers=auth, json={
        "account": account_name, "caller_id": "(415) 555-2699", "cps": 2.5, "window": "08:30-20:00",
        "days": [5, 1, 2], "timezone": "America/New_York", "retry_policy": {"busy": {"delay_s": 60}},
        "provider_options": {"ring_timeout": 30}, "start_at": "2030-01-01T09:00:00+00:00"})
    assert response.status_code == 200, response.text
    settings = response.json()["settings"]
    assert settings["account_id"] is not None and settings["caller_id"] == "+14155552699"
    assert (settings["cps"], settings["window"], settings["days"], settings["timezone"]) == \
        (2.5, "08:30-20:00", [1, 2, 5], "America/New_York")
    assert settings["retry_policy"] == {"busy": {"delay_s": 60}}
    assert settings["provider_options"] == {"ring_timeout": 30}
    again = client.patch(f"/campaigns/{campaign_id}", headers=auth, json={"weight": 3, "cps": None}).json()
    assert again["settings"]["weight"] == 3 and again["settings"]["cps"] == 2.5
    assert again["settings"]["window"] == "08:30-20:00"


@pytest.mark.parametrize(("body", "field"), [
    ({"cps": 0}, "cps"),
    ({"cps": "fast"}, "cps"),
    ({"max_concurrent": -1}, "max_concurrent"),
    ({"weight": 0}, "weight"),
    ({"window": "9 to 5"}, "window"),
    ({"window": "09:00-25:00"}, "window"),
    ({"days": [0, 3]}, "days.0"),
    ({"days": []}, "days"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"retry_policy": {"grumpy": {"delay_s": 1}}}, "retry_policy"),
    ({"retry_policy": {"busy": {"max_attempts": 0}}}, "retry_policy"),
    ({"start_at": "2030-01-01T09:00:00"}, "start_at"),
    ({"cpss": 3}, "cpss"),
    ({"answer_url": "ftp://example.com"}, "answer_url"),
    ({"account": "no-such-account"}, "account"),
    ({"caller_id": "12"}, "caller_id"),
])
def test_patch_names_the_bad_field_and_changes_nothing(client: TestClient, auth: dict[str, str],
                                                       body: dict[str, Any], field: str) -> None:
    campaign_id = create(client, auth)
    before = client.get(f"/campaigns/{campaign_id}", headers=auth).json()["settings"]
    response = client.patch(f"/campaigns/{campaign_id}", headers=auth, json={"weight": 7, **body})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid_field" and field in field_names(error), error
    assert field.split(".")[0] in error["message"]
    assert client.get(f"/campaigns/{campaign_id}", headers=auth).json()["settings"] == before


def test_patch_refuses_an_end_before_the_start(client: TestClient, auth: dict[str, str]) -> None:
    campaign_id = create(client, auth)
    response = client.patch(f"/campaigns/{campaign_id}", headers=auth, json={
        "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"})
    assert response.status_code == 422
    assert "end_at must be after start_at" in response.json()["message"]


def test_patch_refuses_a_body_that_is_not_json(client: TestClient, auth: dict[str, str]) -> None:
    campaign_id = create(client, auth)
    response = client.patch(f"/campaigns/{campaign_id}", headers={**auth, "Content-Type": "application/json"},
                            content=b"{not json")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_field"


# --- state machine --------------------------------------------------------------------------------


def test_start_without_an_account_is_a_conflict_that_says_why(client: TestClient, auth: dict[str, str],
                                                              account_name: str) -> None:
    campaign_id = create(client, auth)
    response = client.post(f"/campaigns/{campaign_id}/start", headers=auth)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict" and "no provider account" in response.json()["message"]
    client.patch(f"/campaigns/{campaign_id}", headers=auth, json={"account": account_name})
    response = client.post(f"/campaigns/{campaign_id}/start", headers=auth)
    assert response.status_code == 409 and "no caller id" in response.json()["message"]
    assert client.get(f"/campaigns/{campaign_id}", headers=auth).json()["state"] == "draft"


def test_start_pause_resume_cancel_follow_the_state_machine(
        client: TestClient, auth: dict[str, str], account_name: str, db: psycopg.Connection) -> None:
    campaign_id = create(client, auth, account=account_name, caller_id="+14155552699")
    base = f"/campaigns/{campaign_id}"

    def act(action: str, expected_status: int = 200) -> dict[str, Any]:
        response = client.post(f"{base}/{action}", headers=auth)
        assert response.status_code == expected_status, (action, response.text)
        body: dict[str, Any] = response.json()
        return body

    assert "must be paused" in act("resume", 409)["message"]  # a draft is started, not resumed
    assert "must be running" in act("pause", 409)["message"]
    assert act("start") == {"id": campaign_id, "state": "running", "state_reason": None,
                            "destinations_cancelled": None}
    assert "is running" in act("start", 409)["message"]
    assert act("resume", 409)["error"] == "conflict"
    assert act("pause") == {"id": campaign_id, "state": "paused", "state_reason": "paused by operator",
                            "destinations_cancelled": None}
    assert act("resume")["state"] == "running"
    cancelled = act("cancel")
    assert (cancelled["state"], cancelled["destinations_cancelled"]) == ("cancelled", 3)
    for action in ("start", "pause", "resume", "cancel"):
        assert act(action, 409)["error"] == "conflict"
    statuses = db.execute("SELECT DISTINCT status FROM destination WHERE campaign_id = %s", (campaign_id,))
    assert statuses.fetchall() == [("cancelled",)]


def test_a_draft_can_be_cancelled(client: TestClient, auth: dict[str, str]) -> None:
    campaign_id = create(client, auth)
    body = client.post(f"/campaigns/{campaign_id}/cancel", headers=auth).json()
    assert (body["state"], body["destinations_cancelled"]) == ("cancelled", 3)


# --- unknown ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "json"), [
    ("GET", f"/campaigns/{UNKNOWN_ID}", None),
    ("GET", f"/campaigns/{UNKNOWN_ID}/rejects", None),
    ("GET", f"/campaigns/{UNKNOWN_ID}/results", None),
    ("PATCH", f"/campaigns/{UNKNOWN_ID}", {"cps": 1}),
    ("POST", f"/campaigns/{UNKNOWN_ID}/start", None),
    ("POST", f"/campaigns/{UNKNOWN_ID}/pause", None),
    ("POST", f"/campaigns/{UNKNOWN_ID}/resume", None),
    ("POST", f"/campaigns/{UNKNOWN_ID}/cancel", None),
])
def test_an_unknown_campaign_is_404_naming_it(client: TestClient, auth: dict[str, str], method: str,
                                              path: str, json: dict[str, Any] | None) -> None:
    response = client.request(method, path, headers=auth, json=json)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found" and str(UNKNOWN_ID) in response.json()["message"]


def test_a_campaign_id_that_is_not_a_number_is_named(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/campaigns/abc", headers=auth)
    assert response.status_code == 422
    assert field_names(response.json()) == {"campaign_id"}


# --- errors at the boundary -----------------------------------------------------------------------


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotFound("no campaign 9"), 404, "not_found"),
    (InvalidRequest("cps must be above 0"), 422, "invalid_request"),
    (BadInputFile("no_header", "line 1 looks like data"), 422, "no_header"),
    (ServiceUnavailable("Postgres is not reachable"), 503, "service_unavailable"),
    (psycopg.OperationalError("server closed the connection"), 503, "service_unavailable"),
    (PoolTimeout("couldn't get a connection"), 503, "service_unavailable"),
])
def test_every_domain_error_has_its_status_and_code(error: Exception, status: int, code: str) -> None:
    mapped = as_api_error(error)
    assert mapped is not None and (mapped.status_code, mapped.error) == (status, code)


def test_an_unexpected_error_is_not_disguised_as_a_client_error() -> None:
    assert as_api_error(RuntimeError("bug")) is None


def test_postgres_down_is_503_with_the_way_to_start_it(client: TestClient, auth: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise unavailable("postgresql://postgres@127.0.0.1:1/dialer", OSError("connection refused"))

    monkeypatch.setattr(deps, "connect", refuse)
    response = client.get("/campaigns", headers=auth)
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable" and "start it with" in response.json()["message"]
