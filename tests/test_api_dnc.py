"""Do-not-call lists and frequency caps on the API, in-process (TestClient with the real app and lifespan)
on the real Postgres."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.accounts import add_account

# `client` and `auth` are the shared API fixtures in tests/conftest.py.


@pytest.fixture(scope="module")
def account(database_url: str) -> str:
    name = f"dnc-api-{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_account(
            conn, name=name, provider="plivo", auth_id="MAXX", auth_token="t", cps=5, max_concurrent=10
        )
    return name


def test_dnc_routes_need_an_api_key(client: TestClient) -> None:
    assert client.get("/dnc").status_code == 401


def test_an_accounts_list_is_added_to_imported_exported_and_removed_from(
    client: TestClient, auth: dict[str, str], account: str
) -> None:
    added = client.post("/dnc", json={"number": "(718) 555-0101", "account": account}, headers=auth)
    assert added.status_code == 201 and added.json()["number"] == "+17185550101" and added.json()["changed"]
    upload = client.post(
        "/dnc/import",
        files={"file": ("dnc.csv", b"phone\n718-555-0102\nbogus\n+17185550101\n", "text/csv")},
        data={"account": account},
        headers=auth,
    )
    assert upload.status_code == 200, upload.text
    assert upload.json() | {"rejects": None} == {
        "added": 1,
        "already_listed": 1,
        "rejected": 1,
        "rejects": None,
    }
    assert upload.json()["rejects"][0]["line"] == 3
    exported = client.get("/dnc", params={"account": account}, headers=auth)
    assert [line.split(",")[0] for line in exported.text.splitlines()] == [
        "number",
        "+17185550101",
        "+17185550102",
    ]
    removed = client.delete("/dnc/+17185550101", params={"account": account}, headers=auth)
    assert removed.json()["changed"] is True
    assert "+17185550101" not in client.get("/dnc", params={"account": account}, headers=auth).text


def test_bad_input_is_named(client: TestClient, auth: dict[str, str]) -> None:
    bad = client.post("/dnc", json={"number": "not a number"}, headers=auth)
    assert bad.status_code == 422 and "not a phone number" in bad.text
    missing = client.post("/dnc", json={"number": "+17185550109", "account": "no-such-account"}, headers=auth)
    assert missing.status_code == 422 and missing.json()["fields"][0]["field"] == "account"
    caps = client.put("/accounts/no-such-account/frequency-caps", json={"per_day": 2}, headers=auth)
    assert caps.status_code == 404


def test_frequency_caps_are_set_on_the_account(
    client: TestClient, auth: dict[str, str], account: str, database_url: str
) -> None:
    answer = client.put(
        f"/accounts/{account}/frequency-caps", json={"per_day": 2, "per_week": 5}, headers=auth
    )
    assert answer.status_code == 200 and answer.json()["per_week"] == 5
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT max_attempts_per_number_day, max_attempts_per_number_week FROM provider_account "
            "WHERE name = %s",
            (account,),
        ).fetchone()
    assert row == (2, 5)
    refused = client.put(
        f"/accounts/{account}/frequency-caps", json={"per_day": 9, "per_week": 5}, headers=auth
    )
    assert refused.status_code == 422
