"""Issue 22's rough edges of `dialer campaign`, through the real `dialer` entry point (workers.entrypoints.cli
.main: its one-line errors and exit codes) against the real Postgres: a missing campaign exits 1 with the
message `show` gives, contradictory options are refused, a rerun with nothing to dial starts nothing, and a
schedule's datetimes are in its own zone (a bare --until ends that day there)."""

from __future__ import annotations

import re
import secrets
import sys
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.schedule_store import parse_until
from workers.entrypoints import cli

MISSING = 987654321
# Every `dialer campaign` command that takes a campaign id, with what else it needs to run.
BY_ID: list[list[str]] = [
    ["show"], ["show", "--json"], ["warnings"], ["rejects"], ["rejects", "--out", "/dev/null"],
    ["schedule"], ["schedule", "--off"], ["schedule", "--cron", "0 10 * * * UTC"], ["runs"], ["rerun"],
    ["clone"], ["set", "--cps", "2"], ["start"], ["resume"], ["pause"], ["cancel"], ["status"],
    ["status", "--json"], ["status", "--run", "1"], ["status", "--follow"], ["archive"], ["delete", "--yes"],
]


def dialer(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           *args: str) -> tuple[int, str]:
    """Run `dialer ARGS` in this process as the console script does; (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["dialer", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).replace("│", " ").split())  # Rich's boxes undone


@pytest.mark.parametrize("command", BY_ID, ids=lambda c: " ".join(c))
def test_a_missing_campaign_exits_1_with_the_message_show_gives(
        database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    code, output = dialer(capsys, monkeypatch, "campaign", command[0], str(MISSING), *command[1:])
    assert code == 1, output
    assert f"error: no campaign {MISSING} (see `dialer campaign list`)" in output


@pytest.fixture()
def finished(db: psycopg.Connection) -> int:
    """A completed campaign on an account, whose two destinations ended busy."""
    tag = secrets.token_hex(3)
    account = add_account(db, name=f"edges-{tag}", provider="plivo", auth_id="MAEDGE", auth_token="t", cps=5,
                          max_concurrent=5)
    row = db.execute("INSERT INTO campaign (name, account_id, caller_id, state) VALUES (%s, %s, "
                     "'+14155550100', 'completed') RETURNING id", (f"edges-{tag}", account)).fetchone()
    assert row is not None
    db.execute("INSERT INTO destination (campaign_id, line_no, number, timezone, status, outcome) VALUES "
               "(%(c)s, 2, '+14155552671', 'UTC', 'done', 'busy'), (%(c)s, 3, '+14155552672', 'UTC', 'done', "
               "'busy')", {"c": row[0]})
    return int(row[0])


def runs_of(db: psycopg.Connection, campaign_id: int) -> int:
    row = db.execute("SELECT count(*) FROM campaign_run WHERE campaign_id = %s", (campaign_id,)).fetchone()
    return int(row[0]) if row else 0


def test_a_rerun_with_nothing_to_dial_says_so_and_starts_nothing(
        finished: int, db: psycopg.Connection, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = dialer(capsys, monkeypatch, "campaign", "rerun", str(finished), "--only", "no_answer")
    assert code == 1
    assert f"campaign {finished} has no destination whose last outcome is no_answer; no run was started" \
        in output
    assert runs_of(db, finished) == 0
    assert db.execute("SELECT state FROM campaign WHERE id = %s", (finished,)).fetchone() == ("completed",)
    code, output = dialer(capsys, monkeypatch, "campaign", "rerun", str(finished), "--only", "busy")
    assert code == 0 and "started with 2 destinations" in output


def test_the_api_rerun_with_nothing_to_dial_is_refused(finished: int, client: Any,
                                                        auth: dict[str, str], db: psycopg.Connection) -> None:
    answer = client.post(f"/campaigns/{finished}/rerun", json={"only": ["no_answer"]}, headers=auth)
    assert answer.status_code in (409, 422) and "no run was started" in answer.text
    assert runs_of(db, finished) == 0


@pytest.mark.parametrize(("args", "refusal"), [
    (["--off", "--cron", "0 10 * * * UTC"], "--off removes the schedule; it takes no --cron"),
    (["--off", "--only", "busy"], "it takes no --only"),
    (["--until", "2099-01-31"], "--until shape a new schedule: give them with --cron"),
    (["--timezone", "Europe/Paris", "--run-for", "4h"], "--timezone, --run-for shape a new schedule"),
])
def test_contradictory_schedule_options_are_refused(
        finished: int, db: psycopg.Connection, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, args: list[str], refusal: str) -> None:
    code, output = dialer(capsys, monkeypatch, "campaign", "schedule", str(finished), *args)
    assert code == 2 and refusal in output
    assert db.execute("SELECT count(*) FROM campaign_schedule WHERE campaign_id = %s",
                      (finished,)).fetchone() == (0,)


@pytest.mark.parametrize(("args", "refusal"), [
    (["set", "{id}", "--answer-url", "https://example.com/a", "--message", "Hi"],
     "--answer-url takes over answered calls; give it without --message"),
    (["status", "{id}", "--follow", "--run", "1"], "--follow shows the live campaign"),
    (["status", "{id}", "--follow", "--json"], "--follow shows the live campaign"),
    (["rejects", "{id}", "--out", "a.csv", "--csv", "b.csv"], "give --out only (--csv is its old name)"),
])
def test_contradictory_options_are_refused(finished: int, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, args: list[str],
                                           refusal: str) -> None:
    code, output = dialer(capsys, monkeypatch, "campaign", *[a.format(id=finished) for a in args])
    assert code == 2 and refusal in output


def test_schedule_prints_its_datetimes_in_its_zone_and_a_bare_until_ends_that_day_there(
        finished: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = dialer(capsys, monkeypatch, "campaign", "schedule", str(finished), "--cron",
                          "30 9 * * * America/New_York", "--until", "2099-01-31")
    assert code == 0, output
    assert "until 2099-01-31 23:59:59 EST" in output
    assert "+00:00" not in output and ".999999" not in output
    assert re.search(r"next run \d{4}-\d\d-\d\d 09:30:00 E[SD]T", output), output
    code, shown = dialer(capsys, monkeypatch, "campaign", "show", str(finished))
    assert code == 0 and "until 2099-01-31 23:59:59 EST" in shown


def test_a_bare_until_date_is_the_end_of_that_day_in_the_given_zone() -> None:
    until = parse_until("2027-01-31", "Asia/Tokyo")
    assert until == datetime(2027, 1, 31, 23, 59, 59, 999999, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert parse_until("2027-01-31T08:00", "Europe/Paris") == datetime(2027, 1, 31, 8,
                                                                        tzinfo=ZoneInfo("Europe/Paris"))
    assert parse_until("2027-01-31T08:00+00:00", "Europe/Paris").utcoffset().total_seconds() == 0  # type: ignore[union-attr]
