"""Results keep the input (issue 22): one schema for every export (the uploaded row's own columns first, in
the upload's order, then the call's fields), as CSV and JSON Lines from the CLI, both API routes and the
console; a missing campaign or run is refused; contradictory options are refused; a destination screened
by DNC shows its earlier run's call apart from today's outcome. Real Postgres, the real loader, the real
`dialer` process for exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from campaigns import runs
from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.dnc import add_number
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.results_schema import CALL_FIELDS, ResultFormat, format_for_accept, header
from campaigns.states import RunTrigger
from workers.dispatch.dnc_screen import screen_claimed
from workers.entrypoints.cli import app

runner = CliRunner()
# `status` is also a call field: the input's column becomes `input_status`.
UPLOAD = ("customer_id,name,phone,status\n"
          "C-1,Ann,+14155552671,gold\n"
          "C-2,=cmd|' /C calc'!A0,+14155552672,silver\n"
          "C-3,Cy,+14155552673,bronze\n")
INPUT_HEADER = ["customer_id", "name", "phone", "input_status"]
EXPECTED_HEADER = [*INPUT_HEADER, *CALL_FIELDS]


@pytest.fixture(scope="module")
def account_id(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return add_account(conn, name=f"results-{secrets.token_hex(3)}", provider="plivo",
                           auth_id="MARESULTS", auth_token="t", cps=5, max_concurrent=5)


def _campaign(tmp_path: Path, account_id: int, upload: str = UPLOAD) -> int:
    path = tmp_path / f"people-{secrets.token_hex(3)}.csv"
    path.write_text(upload, encoding="utf-8")
    report = load_campaign_csv(name=f"results-{secrets.token_hex(3)}", source=path,
                               options=LoadOptions(account_id=account_id, caller_id="+14155550100"))
    return report.campaign_id


def _attempt(db: psycopg.Connection, campaign_id: int, account_id: int, number: str, *, attempt_no: int,
             run_no: int, outcome: str, provider_status: str = "completed") -> str:
    call_uuid = str(uuid.uuid4())
    db.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, run_no, status, "
        "request_uuid, call_uuid, provider_status, outcome, duration, billed_duration, lease_expires_at) "
        "SELECT id, campaign_id, %s, %s, %s, 'completed', %s, %s, %s, %s, 12, 60, now() FROM destination "
        "WHERE campaign_id = %s AND number = %s",
        (account_id, attempt_no, run_no, f"req-{call_uuid[:8]}", call_uuid, provider_status, outcome,
         campaign_id, number))
    return call_uuid


def _run_one_done(db: psycopg.Connection, campaign_id: int, account_id: int) -> dict[str, str]:
    """Run 1 as the dialer leaves it: every destination answered once, the campaign completed."""
    calls = {}
    for number in ("+14155552671", "+14155552672", "+14155552673"):
        calls[number] = _attempt(db, campaign_id, account_id, number, attempt_no=1, run_no=1,
                                 outcome="answered")
    db.execute("UPDATE destination SET status = 'done', outcome = 'answered', attempts_made = 1 "
               "WHERE campaign_id = %s", (campaign_id,))
    db.execute("UPDATE campaign SET state = 'completed' WHERE id = %s", (campaign_id,))
    return calls


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `dialer` process: its exit code and its one-line errors."""
    return subprocess.run([sys.executable, "-m", "workers.entrypoints.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)


def _csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def _jsonl_rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


# --- the schema, pure --------------------------------------------------------------------------------

@pytest.mark.parametrize(("columns", "expected"), [
    (["customer_id", "phone"], ["customer_id", "phone"]),
    (["number", "status", "phone"], ["input_number", "input_status", "phone"]),
    (["outcome", "input_outcome"], ["input_outcome", "input_input_outcome"]),
    ([], []),
])
def test_input_columns_come_first_and_a_clash_is_prefixed_input(columns: list[str],
                                                                expected: list[str]) -> None:
    assert list(header(columns)) == [*expected, *CALL_FIELDS]


@pytest.mark.parametrize(("accept", "expected"), [
    (None, ResultFormat.CSV), ("text/csv", ResultFormat.CSV), ("*/*", ResultFormat.CSV),
    ("application/jsonl", ResultFormat.JSONL), ("application/x-ndjson, */*;q=0.1", ResultFormat.JSONL),
])
def test_accept_chooses_json_lines_only_when_it_names_them(accept: str | None,
                                                           expected: ResultFormat) -> None:
    assert format_for_accept(accept) is expected


# --- CLI ------------------------------------------------------------------------------------------------

def test_cli_results_start_with_the_uploads_own_columns_in_csv_and_json_lines(
        database_url: str, tmp_path: Path, account_id: int, db: psycopg.Connection) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    calls = _run_one_done(db, campaign_id, account_id)

    result = runner.invoke(app, ["campaign", "results", str(campaign_id)])
    assert result.exit_code == 0, result.output
    columns, rows = _csv_rows(result.stdout)
    assert columns == EXPECTED_HEADER
    assert [(r["customer_id"], r["name"], r["phone"], r["input_status"]) for r in rows] == [
        ("C-1", "Ann", "+14155552671", "gold"), ("C-2", "'=cmd|' /C calc'!A0", "+14155552672", "silver"),
        ("C-3", "Cy", "+14155552673", "bronze")]  # a formula in an input column is made safe
    assert [(r["status"], r["outcome"], r["call_uuid"]) for r in rows][0] == \
        ("done", "answered", calls["+14155552671"])

    out = tmp_path / "results.jsonl"
    for args in (["--format", "jsonl", "--out", str(out)], ["--json", "--out", str(out)]):
        written = runner.invoke(app, ["campaign", "results", str(campaign_id), *args])
        assert written.exit_code == 0, written.output
        lines = _jsonl_rows(out.read_text(encoding="utf-8"))
        assert [list(line) for line in lines] == [EXPECTED_HEADER] * 3
        assert lines[1]["name"] == "=cmd|' /C calc'!A0"  # JSON is not a spreadsheet: the value as uploaded
        first = lines[0]
        assert (first["customer_id"], first["attempts"], first["duration"], first["spoken_text"]) == \
            ("C-1", 1, 12, None)
    to_stdout = runner.invoke(app, ["campaign", "results", str(campaign_id), "--json"])
    assert [line["customer_id"] for line in _jsonl_rows(to_stdout.stdout)] == ["C-1", "C-2", "C-3"]


def test_the_per_run_and_default_results_have_the_same_columns(
        database_url: str, tmp_path: Path, account_id: int, db: psycopg.Connection) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    _run_one_done(db, campaign_id, account_id)
    headers = set()
    for args in ([], ["--run", "1"], ["--all-runs"]):
        result = runner.invoke(app, ["campaign", "results", str(campaign_id), *args])
        assert result.exit_code == 0, result.output
        columns, rows = _csv_rows(result.stdout)
        headers.add(tuple(columns))
        assert [r["customer_id"] for r in rows] == ["C-1", "C-2", "C-3"]
        assert {r["spoken_text"] for r in rows} == {""} and {r["billed_duration"] for r in rows} == {"60"}
    assert headers == {tuple(EXPECTED_HEADER)}


def test_results_of_a_missing_campaign_or_run_exit_1_like_show_and_write_no_file(
        database_url: str, tmp_path: Path, account_id: int, db: psycopg.Connection) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    _run_one_done(db, campaign_id, account_id)
    out = tmp_path / "none.csv"
    missing = _cli("campaign", "results", "999999999", "--out", str(out))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == "error: no campaign 999999999 (see `dialer campaign list`)"
    no_run = _cli("campaign", "results", str(campaign_id), "--run", "99", "--out", str(out))
    assert no_run.returncode == 1 and no_run.stdout == ""
    assert no_run.stderr.strip() == (f"error: campaign {campaign_id} has no run 99: it has only run 1 "
                                     f"(see `dialer campaign runs {campaign_id}`)")
    assert not out.exists()
    draft = _campaign(tmp_path, account_id)
    assert "has no run 1: it has no run yet" in _cli("campaign", "results", str(draft), "--run", "1").stderr


def test_contradictory_results_options_are_refused_in_one_line(
        database_url: str, tmp_path: Path, account_id: int) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    for args, words in ((["--run", "1", "--all-runs"], "--run 1 and --all-runs contradict each other"),
                        (["--json", "--format", "csv"], "--json and --format csv contradict each other")):
        refused = _cli("campaign", "results", str(campaign_id), *args)
        assert refused.returncode == 1 and refused.stdout == "", refused
        assert len(refused.stderr.strip().splitlines()) == 1 and words in refused.stderr


# --- DNC-screened destination ---------------------------------------------------------------------------

def test_a_destination_screened_by_dnc_shows_its_earlier_call_apart_from_todays_outcome(
        database_url: str, tmp_path: Path, db: psycopg.Connection) -> None:
    # Its own account: the number it lists stays off the other tests' campaigns.
    account_id = add_account(db, name=f"results-dnc-{secrets.token_hex(3)}", provider="plivo",
                             auth_id="MARESULTSDNC", auth_token="t", cps=5, max_concurrent=5)
    campaign_id = _campaign(tmp_path, account_id)
    calls = _run_one_done(db, campaign_id, account_id)
    started = runs.start_run(db, campaign_id, only=None, trigger=RunTrigger.RERUN)
    assert started.run_no == 2
    add_number(db, "+14155552672", account_id=account_id, reason="asked to stop")
    claimed = [row[0] for row in db.execute(
        "UPDATE destination SET status = 'queued' WHERE campaign_id = %s RETURNING id", (campaign_id,))]
    assert len(screen_claimed(db, campaign_id, claimed)) == 2  # the dispatcher's DNC check at claim time

    default = {r["customer_id"]: r for r in _csv_rows(
        runner.invoke(app, ["campaign", "results", str(campaign_id)]).stdout)[1]}
    screened = default["C-2"]
    assert (screened["status"], screened["run"], screened["outcome"], screened["run_attempts"]) == \
        ("dnc", "2", "dnc", "0")
    assert (screened["call_run"], screened["call_outcome"], screened["call_uuid"],
            screened["provider_status"], screened["attempts"]) == \
        ("1", "answered", calls["+14155552672"], "completed", "1")
    waiting = default["C-1"]
    assert (waiting["status"], waiting["run"], waiting["outcome"], waiting["call_run"]) == \
        ("queued", "2", "", "1")

    run_2 = _csv_rows(runner.invoke(app, ["campaign", "results", str(campaign_id), "--run", "2"]).stdout)[1]
    assert [(r["customer_id"], r["run"], r["outcome"], r["call_run"]) for r in run_2] == \
        [("C-2", "2", "dnc", "1")]
    every = _jsonl_rows(runner.invoke(app, ["campaign", "results", str(campaign_id), "--all-runs",
                                            "--json"]).stdout)
    assert [(r["customer_id"], r["run"], r["outcome"], r["call_run"]) for r in every] == [
        ("C-1", 1, "answered", 1), ("C-2", 1, "answered", 1), ("C-3", 1, "answered", 1),
        ("C-2", 2, "dnc", 1)]


# --- API and console ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(database_url: str) -> Any:
    from workers.entrypoints.api.app import create_app

    with TestClient(create_app(apply_events=False)) as client:
        yield client


@pytest.fixture(scope="module")
def api_auth(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_api_key(conn, name=f"results-{secrets.token_hex(3)}", role="admin").key
    return {"Authorization": f"Bearer {key}"}


def test_both_api_results_routes_give_the_input_columns_first_as_csv_or_json_lines(
        api: TestClient, api_auth: dict[str, str], tmp_path: Path, account_id: int,
        db: psycopg.Connection) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    _run_one_done(db, campaign_id, account_id)
    for path in (f"/campaigns/{campaign_id}/results", f"/campaigns/{campaign_id}/runs/results"):
        as_csv = api.get(path, headers=api_auth)
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        columns, rows = _csv_rows(as_csv.text)
        assert columns == EXPECTED_HEADER and [r["customer_id"] for r in rows] == ["C-1", "C-2", "C-3"]
        by_query = api.get(path, headers=api_auth, params={"format": "jsonl"})
        by_accept = api.get(path, headers={**api_auth, "Accept": "application/x-ndjson"})
        for answer in (by_query, by_accept):
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("application/jsonl")
            assert ".jsonl" in answer.headers["content-disposition"]
            lines = _jsonl_rows(answer.text)
            assert [list(line) for line in lines] == [EXPECTED_HEADER] * 3
            assert [line["customer_id"] for line in lines] == ["C-1", "C-2", "C-3"]
        assert api.get(path, headers=api_auth, params={"format": "xml"}).status_code == 422
    missing_run = api.get(f"/campaigns/{campaign_id}/runs/results", headers=api_auth, params={"run": 99})
    assert missing_run.status_code == 404 and "has no run 99" in missing_run.json()["message"]
    assert api.get("/campaigns/999999999/results", headers=api_auth).status_code == 404


def test_the_console_downloads_are_the_same_schema(
        api: TestClient, api_auth: dict[str, str], database_url: str, tmp_path: Path, account_id: int,
        db: psycopg.Connection) -> None:
    campaign_id = _campaign(tmp_path, account_id)
    _run_one_done(db, campaign_id, account_id)
    key = api_auth["Authorization"].removeprefix("Bearer ")
    console = TestClient(api.app, base_url="http://127.0.0.1")
    signed_in = console.post("/ui/login", data={"key": key, "next": "/ui/campaigns"}, follow_redirects=False)
    assert signed_in.status_code == 303
    as_csv = console.get(f"/ui/campaigns/{campaign_id}/results.csv")
    assert as_csv.status_code == 200 and _csv_rows(as_csv.text)[0] == EXPECTED_HEADER
    as_jsonl = console.get(f"/ui/campaigns/{campaign_id}/results.jsonl")
    assert as_jsonl.status_code == 200
    assert [list(line) for line in _jsonl_rows(as_jsonl.text)] == [EXPECTED_HEADER] * 3
    assert f"/ui/campaigns/{campaign_id}/results.jsonl" in console.get(f"/ui/campaigns/{campaign_id}").text
