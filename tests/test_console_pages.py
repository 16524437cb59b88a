"""The operator console's pages in process (the API app, a real Postgres): sign-in gives a signed HttpOnly
SameSite cookie, every POST needs the session's CSRF token, a viewer gets no controls and 403, a key limited
to one account sees only its campaigns, validation errors sit beside their fields in the CLI's words, and a
bad row's reject is shown with its line, value and reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key, revoke_api_key
from workers.entrypoints.api.app import create_app
from workers.entrypoints.console.session import COOKIE, decode

CSV = b"phone,first_name\n+14155550101,Ada\nnot-a-number,Bob\n+14155550102,Cy\n"


@pytest.fixture(scope="module")
def app(database_url: str) -> Iterator[Any]:
    yield create_app(apply_events=False)


@pytest.fixture(scope="module")
def accounts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {name: add_account(conn, name=name, provider="plivo", auth_id=f"MA{name.upper()}",
                                  auth_token="tok", cps=10, max_concurrent=20,
                                  base_url="http://127.0.0.1:9")
                for name in ("console-a", "console-b")}


def _key(database_url: str, role: str, accounts: list[int] = ()) -> tuple[int, str]:  # type: ignore[assignment]
    with psycopg.connect(database_url, autocommit=True) as conn:
        new = create_api_key(conn, name=f"console-{role}", role=role, accounts=accounts)
    return new.id, new.key


def _signed_in(app: Any, key: str) -> TestClient:
    client = TestClient(app, base_url="http://127.0.0.1")
    client.__enter__()
    answer = client.post("/ui/login", data={"key": key, "next": "/ui/campaigns"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/campaigns"
    return client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _create(client: TestClient, **fields: str) -> Any:
    page = client.get("/ui/campaigns/new").text
    data = {"csrf": _csrf(page), "name": "console upload", **fields}
    return client.post("/ui/campaigns/new", data=data, files={"file": ("list.csv", CSV, "text/csv")},
                       follow_redirects=False)


def test_signing_in_sets_a_signed_httponly_samesite_cookie_and_a_wrong_key_is_refused(
    app, database_url
) -> None:
    _, key = _key(database_url, "admin")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/ui/campaigns", follow_redirects=False).headers["location"].startswith("/ui/login")
        wrong = client.post("/ui/login", data={"key": "dlr_wrong"}, follow_redirects=False)
        assert wrong.status_code == 401 and "unknown or revoked API key" in wrong.text
        answer = client.post("/ui/login", data={"key": key, "next": "https://evil.example/"},
                             follow_redirects=False)
        assert answer.headers["location"] == "/ui/campaigns"  # never another site
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert key not in cookie
        value = client.cookies.get(COOKIE)
        assert decode(value) is not None and decode(value[:-2] + "xx") is None  # a changed signature
        assert client.get("/ui/campaigns").status_code == 200


def test_a_post_without_the_sessions_csrf_token_is_refused(app, database_url, accounts) -> None:
    _, key = _key(database_url, "admin")
    client = _signed_in(app, key)
    answer = client.post("/ui/campaigns/new", data={"name": "x", "csrf": "forged"},
                         files={"file": ("list.csv", CSV, "text/csv")}, follow_redirects=False)
    assert answer.status_code == 403 and "CSRF" in answer.text


def test_errors_sit_beside_their_fields_in_the_clis_words(app, database_url, accounts) -> None:
    _, key = _key(database_url, "admin")
    client = _signed_in(app, key)
    answer = _create(client, caller_id="12", window="9-5", days="8", retries="busy:300", timezone="Mars/Base")
    assert answer.status_code == 422
    errors = dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]+)</p>', answer.text))
    assert errors["window"] == "expected HH:MM-HH:MM, e.g. 09:00-21:00, not &#39;9-5&#39;"
    assert errors["days"] == "ISO weekdays are 1 (Monday) to 7 (Sunday)"
    assert errors["retries"].startswith("--retry takes OUTCOME=DELAY_S:MAX_ATTEMPTS")
    assert "time zone" in errors["timezone"] and "caller_id" in errors


def test_an_upload_shows_its_reject_with_line_value_and_reason(app, database_url, accounts) -> None:
    _, key = _key(database_url, "admin")
    client = _signed_in(app, key)
    answer = _create(client, account=str(accounts["console-a"]), caller_id="+14155550100",
                     window="09:00-21:00", days="1-5", retries="busy=300:3")
    assert answer.status_code == 303, answer.text[:2000]
    page = client.get(answer.headers["location"]).text
    rejects = page.split('id="rejects"', 1)[1]
    assert re.search(r'<td class="num">3</td><td><code>not-a-number</code></td><td class="reject">', rejects)
    assert 'id="start"' in page


def test_a_viewer_sees_no_start_button_and_a_forged_start_is_403(app, database_url, accounts) -> None:
    _, admin = _key(database_url, "admin")
    campaign_page = _create(_signed_in(app, admin), account=str(accounts["console-a"]),
                            caller_id="+14155550100").headers["location"]
    campaign_id = int(campaign_page.rsplit("/", 1)[1].split("?")[0])
    _, viewer = _key(database_url, "viewer", [accounts["console-a"]])
    client = _signed_in(app, viewer)
    page = client.get(f"/ui/campaigns/{campaign_id}").text
    assert 'id="start"' not in page and "New campaign" not in page
    forged = client.post(f"/ui/campaigns/{campaign_id}/start", data={"csrf": _csrf(page)},
                         follow_redirects=False)
    assert forged.status_code == 403
    with psycopg.connect(database_url) as conn:
        state = conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert state == ("draft",)


def test_a_key_of_one_account_sees_none_of_anothers_campaigns(app, database_url, accounts) -> None:
    _, admin = _key(database_url, "admin")
    other = _create(_signed_in(app, admin), account=str(accounts["console-b"])).headers["location"]
    other_id = int(other.rsplit("/", 1)[1].split("?")[0])
    _, operator = _key(database_url, "operator", [accounts["console-a"]])
    client = _signed_in(app, operator)
    assert client.get(f"/ui/campaigns/{other_id}").status_code == 404
    assert f'data-campaign="{other_id}"' not in client.get("/ui/campaigns").text
    assert client.get(f"/ui/campaigns/{other_id}/results.csv").status_code == 404


def test_revoking_the_key_ends_its_sessions(app, database_url) -> None:
    key_id, key = _key(database_url, "admin")
    client = _signed_in(app, key)
    assert client.get("/ui/campaigns").status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        revoke_api_key(conn, key_id)
    assert client.get("/ui/campaigns", follow_redirects=False).status_code == 303
