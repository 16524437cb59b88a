"""The console asks the questions the CLI and the API ask, through the same functions (issue 21): one
campaigns list, one rejects page, one resume, one DNC search (in SQL), one check that a session's key still
has its scope; the new-campaign form takes `dialer campaign schedule`'s options in its words; and what an
action did is told once, not kept in the URL."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from campaigns import control, dnc
from campaigns.accounts import add_account, remove_account
from campaigns.api_keys import create_api_key, key_scope_by_id, revoke_api_key
from campaigns.listing import list_campaigns
from campaigns.rejects import reject_page
from tests.engine_harness import load_campaign, numbers
from workers.entrypoints.api.app import create_app
from workers.entrypoints.cli import app as cli_app
from workers.entrypoints.console.chart_data import campaign_charts
from workers.entrypoints.console.session import FLASH_COOKIE, ConsoleUser, decode, encode

CSV = b"phone,first_name\n+14155550101,Ada\nnot-a-number,Bob\n+14155550102,Cy\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def app(database_url: str) -> Any:
    return create_app(apply_events=False)


@pytest.fixture(scope="module")
def account(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return add_account(conn, name="shared-a", provider="plivo", auth_id="MASHAREDA", auth_token="tok",
                           cps=10, max_concurrent=20, base_url="http://127.0.0.1:9")


def _key(database_url: str, role: str, accounts: list[int] | None = None) -> tuple[int, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        new = create_api_key(conn, name=f"shared-{role}", role=role, accounts=accounts or [])
    return new.id, new.key


def _signed_in(app: Any, key: str) -> TestClient:
    """A client signed in to the console (its cookie is the console's only); never closed, since closing
    one ends the app's pool for every other client of the module's app."""
    client = TestClient(app, base_url="http://127.0.0.1")
    client.__enter__()
    answer = client.post("/ui/login", data={"key": key, "next": "/ui/campaigns"}, follow_redirects=False)
    assert answer.status_code == 303
    return client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _create(client: TestClient, **fields: str) -> Any:
    data = {"csrf": _csrf(client.get("/ui/campaigns/new").text), "name": "shared upload", **fields}
    return client.post("/ui/campaigns/new", data=data, files={"file": ("list.csv", CSV, "text/csv")},
                       follow_redirects=False)


def _field_errors(page: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]+)</p>', page))


# --- one campaigns list, one rejects page, one resume ---------------------------------------------------


def test_the_cli_the_api_and_the_console_list_the_same_campaigns(app, database_url, account) -> None:
    drafts = [load_campaign(f"listed {i}", numbers(2, start=7000 + 10 * i), account_id=account)
              for i in range(3)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A loading campaign (its loader's transaction not committed) is never listed anywhere.
        loading = conn.execute("INSERT INTO campaign (name, account_id, state) VALUES ('half', %s, "
                               "'loading') RETURNING id", (account,)).fetchone()[0]  # type: ignore[index]
        shared = {row["id"] for row in list_campaigns(conn, state="draft", limit=500)}
    assert set(drafts) <= shared and loading not in shared
    ours = set(drafts) | {loading}

    listed = runner.invoke(cli_app, ["campaign", "list", "--state", "draft", "--limit", "500"])
    assert listed.exit_code == 0, listed.output
    cli = {int(m) for m in re.findall(r"^\S*\s*(\d+)\s", listed.output, re.MULTILINE)}
    every = runner.invoke(cli_app, ["campaign", "list", "--limit", "500"])
    assert not re.search(rf"^\S*\s*{loading}\s", every.output, re.MULTILINE), "a loading one is listed"

    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    page = client.get("/campaigns", params={"state": "draft", "limit": 500},
                      headers={"Authorization": f"Bearer {admin}"}).json()
    console_page = client.get("/ui/campaigns?state=draft").text
    console = {int(i) for i in re.findall(r'data-campaign="(\d+)"', console_page)}
    assert cli & ours == {item["id"] for item in page["items"]} & ours == console & ours == set(drafts)


def test_a_rejects_page_is_the_same_for_the_cli_the_api_and_the_console(app, database_url, account) -> None:
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    campaign_id = int(_create(client, account=str(account)).headers["location"].rsplit("/", 1)[1])
    with psycopg.connect(database_url) as conn:
        found = reject_page(conn, campaign_id)
    assert found.total == 1 and (found.rows[0].line, found.rows[0].raw_value) == (3, "not-a-number")
    items = client.get(f"/campaigns/{campaign_id}/rejects",
                       headers={"Authorization": f"Bearer {admin}"}).json()["items"]
    assert [(i["line"], i["raw_value"], i["reason"]) for i in items] == [
        (r.line, r.raw_value, r.reason) for r in found.rows]
    shown = runner.invoke(cli_app, ["campaign", "rejects", str(campaign_id)]).output
    assert "not-a-number" in shown and found.rows[0].reason in shown
    assert "<code>not-a-number</code>" in client.get(f"/ui/campaigns/{campaign_id}").text


def test_the_apis_resume_is_campaigns_control_resume(app, database_url, account, monkeypatch) -> None:
    calls: list[int] = []
    real: Callable[..., None] = control.resume

    def resume(conn: psycopg.Connection, campaign_id: int) -> None:
        calls.append(campaign_id)
        real(conn, campaign_id)

    monkeypatch.setattr(control, "resume", resume)
    campaign_id = load_campaign("resumed by the API", numbers(2, start=7100), account_id=account)
    _, admin = _key(database_url, "admin")
    answer = _signed_in(app, admin).post(f"/campaigns/{campaign_id}/resume",
                                         headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 409 and "start a draft with /start" in answer.text
    assert calls == [campaign_id]


# --- a session's key: still the scope it signed in with -------------------------------------------------


def test_key_scope_by_id_reads_the_keys_scope_now(database_url, account) -> None:
    key_id, _ = _key(database_url, "viewer", [account])
    with psycopg.connect(database_url, autocommit=True) as conn:
        scope = key_scope_by_id(conn, key_id)
        assert scope is not None and scope.role == "viewer" and scope.account_ids == {account}
        revoke_api_key(conn, key_id)
        assert key_scope_by_id(conn, key_id) is None


def test_a_session_ends_when_its_keys_accounts_change(app, database_url, account) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        gone = add_account(conn, name="shared-gone", provider="plivo", auth_id="MASHAREDGONE",
                           auth_token="tok", cps=1, max_concurrent=1, base_url="http://127.0.0.1:9")
    _, key = _key(database_url, "operator", [account, gone])
    client = _signed_in(app, key)
    assert client.get("/ui/campaigns").status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        remove_account(conn, gone)  # the key's accounts are no longer the session's
    answer = client.get("/ui/campaigns", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


# --- DNC search in SQL ------------------------------------------------------------------------------------


def test_a_dnc_search_runs_in_sql_by_prefix_or_digits_with_a_limit(app, database_url, account) -> None:
    listed = numbers(150, start=100, area="646") + numbers(5, start=100, area="718")
    with psycopg.connect(database_url, autocommit=True) as conn:
        for number in listed:
            dnc.add_number(conn, number, account_id=account)
        dnc.add_number(conn, "+17185550143")  # the global list is another list
        prefix = dnc.search_entries(conn, "+1718", account_id=account, limit=100)
        assert [e.number for e in prefix] == sorted(n for n in listed if n.startswith("+1718"))
        digits = dnc.search_entries(conn, "0199", account_id=account, limit=100)
        assert [e.number for e in digits] == sorted(n for n in listed if "0199" in n)
        assert len(dnc.search_entries(conn, "646", account_id=account, limit=7)) == 7
        assert [e.number for e in dnc.search_entries(conn, "+1 (718) 555-0143")] == ["+17185550143"]
        assert dnc.search_entries(conn, "%_", account_id=account, limit=3) == dnc.search_entries(
            conn, "", account_id=account, limit=3)  # a pattern character is not a pattern
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    page = client.get(f"/ui/dnc?account={account}&q=%2B1718").text
    assert sorted(re.findall(r"<td>(\+1718\d+)</td>", page)) == sorted(n for n in listed if "+1718" in n)
    assert not re.search(r"<td>\+1646", page)
    answer = client.get("/dnc", params={"account": account, "search": "+1646", "limit": 3},
                        headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200
    lines = answer.text.strip().splitlines()
    assert lines[0] == "number,reason,source,added_at" and len(lines) == 4
    assert all(line.startswith("+1646") for line in lines[1:])


# --- the new campaign's schedule --------------------------------------------------------------------------


def test_a_new_campaign_takes_the_schedule_options_of_the_cli(app, database_url, account) -> None:
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    answer = _create(client, account=str(account), cron="0 10 * * 1-5", cron_timezone="Europe/London",
                     until="2099-01-31", only="busy,no_answer", run_for="4h")
    assert answer.status_code == 303, answer.text[:2000]
    campaign_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT cron, timezone, only_outcomes, run_for_s, until_at::date::text "
                           "FROM campaign_schedule WHERE campaign_id = %s", (campaign_id,)).fetchone()
    assert row == ("0 10 * * 1-5", "Europe/London", ["busy", "no_answer"], 4 * 3600, "2099-01-31")
    assert "each run dials busy, no_answer" in client.get(f"/ui/campaigns/{campaign_id}").text


def test_a_schedules_errors_sit_beside_their_fields_in_the_clis_words(app, database_url, account) -> None:
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    answer = _create(client, account=str(account), cron="0 10 * * 1-5", until="soon", only="busy,later",
                     run_for="0m")
    assert answer.status_code == 422
    errors = _field_errors(answer.text)
    assert errors["until"] == "--until &#39;soon&#39;: expected a date (2027-01-31) or an ISO date-time"
    assert errors["only"].startswith("--only: unknown outcome later; choose from ")
    assert errors["run_for"] == "duration &#39;0m&#39; must be above zero"
    past = _field_errors(_create(client, cron="0 10 * * *", until="2001-01-01").text)
    assert re.fullmatch(r"the schedule&#39;s first firing \(.+ UTC\) is after --until", past["until"])
    zones = _field_errors(_create(client, cron="0 10 * * * Europe/Paris", cron_timezone="Asia/Tokyo").text)
    assert zones["cron"] == "cron names time zone Europe/Paris but --timezone says Asia/Tokyo"
    alone = _field_errors(_create(client, only="busy").text)
    assert "needs a cron" in alone["cron"]


# --- an action's message: told once -----------------------------------------------------------------------


def test_an_actions_message_is_shown_once_and_never_kept_in_the_url(app, database_url, account) -> None:
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    created = _create(client, account=str(account), caller_id="+14155550100")
    target = created.headers["location"]
    assert re.fullmatch(r"/ui/campaigns/\d+", target)  # no ?done=created
    assert 'id="action-done">created<' in client.get(target).text
    assert 'id="action-done"' not in client.get(target).text  # a reload does not tell it again
    page = client.get(target).text
    refused = client.post(f"{target}/resume", data={"csrf": _csrf(page)}, follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"] == target
    assert "it must be paused to resume" in client.get(target).text
    assert "it must be paused to resume" not in client.get(target).text
    # A flash cookie of another session (or forged) is not shown, and is cleared.
    other = _signed_in(app, _key(database_url, "admin")[1])
    other.post(f"{target}/resume", data={"csrf": _csrf(other.get(target).text)}, follow_redirects=False)
    stolen = other.cookies.get(FLASH_COOKIE)
    assert stolen
    client.cookies.set(FLASH_COOKIE, stolen, domain="127.0.0.1", path=target)
    assert "it must be paused to resume" not in client.get(target).text


def test_a_dnc_change_is_told_once(app, database_url, account) -> None:
    _, admin = _key(database_url, "admin")
    client = _signed_in(app, admin)
    page = client.get(f"/ui/dnc?account={account}").text
    answer = client.post("/ui/dnc/add", data={"csrf": _csrf(page), "account": str(account),
                                              "number": "+12125550177"}, follow_redirects=False)
    assert answer.headers["location"] == f"/ui/dnc?account={account}"
    assert "+12125550177 added" in client.get(answer.headers["location"]).text
    assert "+12125550177 added" not in client.get(answer.headers["location"]).text


def test_a_session_cookie_is_never_quoted_whatever_its_length() -> None:
    """Base64 padding ('=') made the cookie a quoted value for some key ids and names, so a client that
    keeps the quotes (httpx's jar) read it back as forged: the value has no padding now."""
    for extra in range(4):
        user = ConsoleUser(12, "k" * (5 + extra), "admin", None, 1_900_000_000, "n" * 22)
        value = encode(user)
        assert "=" not in value and '"' not in value and decode(value, now=0) == user


def test_the_durations_chart_reads_the_talk_time_campaign_status_sums(database_url, account) -> None:
    """Both read call_attempt.duration, the hangup callback's Duration. A Plivo hangup in the simulator's
    seed shape carries none (only StartTime/AnswerTime/EndTime), so there both show nothing (issue 22)."""
    campaign_id = load_campaign("talked", numbers(3, start=7200), account_id=account)
    with psycopg.connect(database_url, autocommit=True) as conn:
        destinations = [row[0] for row in conn.execute(
            "SELECT id FROM destination WHERE campaign_id = %s ORDER BY id", (campaign_id,))]
        for destination, seconds in zip(destinations, (12, 47, None), strict=True):
            conn.execute(
                "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, "
                "outcome, sent_at, answer_at, end_at, duration, lease_expires_at) VALUES (%s, %s, %s, 1, "
                "'completed', 'answered', now(), now(), now(), %s, now())",
                (destination, campaign_id, account, seconds))
        durations = campaign_charts(conn, campaign_id, None)["durations"]
        talk_time = control.status(conn, campaign_id).answered_seconds
    bars = [int(count) for count in re.findall(r"<title>\d+s: (\d+)</title>", durations)]
    assert talk_time == 12 + 47 and sum(bars) == 2  # the answer whose hangup carried no duration: not drawn
