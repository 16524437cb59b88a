"""Retention (issue 20 item 9): `dialer prune --older-than 30d` and the daily beat task delete applied events
of settled calls and refused callbacks older than the cut-off, a bounded batch per transaction, and nothing
else: not a call's final state, not an event still unapplied or of an open call, not an event naming a
recording, and a results export reads the same before and after. Real Postgres; the CLI as a process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.config import get_settings
from campaigns.durations import parse_duration
from campaigns.results_export import write_results_csv
from campaigns.retention import prune

OLD = "now() - interval '40 days'"
NEW = "now() - interval '1 day'"
THIRTY_DAYS = timedelta(days=30)


@dataclass
class Fixture:
    account_id: int
    campaign_id: int
    settled: int  # a completed attempt
    open: int  # an attempt still ringing
    doomed: set[str]  # event keys prune must delete
    kept: set[str]  # event keys it must keep


def _attempt(conn: psycopg.Connection, campaign_id: int, account_id: int, line: int, status: str) -> int:
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made, outcome) "
        "VALUES (%s, %s, %s, 'America/New_York', %s, 1, %s) RETURNING id",
        (campaign_id, line, f"+1212555{line:04d}", "done" if status == "completed" else "dialing",
         "answered" if status == "completed" else None)).fetchone()
    assert destination is not None
    final = status == "completed"
    row = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, "
        "request_uuid, call_uuid, status, outcome, provider_status, duration, answer_at, end_at, "
        "lease_expires_at) "
        "VALUES (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, "
        "CASE WHEN %s THEN now() - interval '40 days' END, CASE WHEN %s THEN now() - interval '40 days' END, "
        "now() + interval '1 hour') RETURNING id",
        (destination[0], campaign_id, account_id, uuid.uuid4(), f"r-{uuid.uuid4()}", f"c-{uuid.uuid4()}",
         status, "answered" if final else None, "completed" if final else None, 20 if final else None,
         final, final)).fetchone()
    assert row is not None
    return int(row[0])


def _event(conn: psycopg.Connection, account_id: int, *, attempt: int | None, received: str, applied: bool,
           raw: dict[str, Any] | None = None, reason: str | None = None) -> str:
    key = f"ev-{uuid.uuid4()}"
    payload = {"raw": raw or {"CallStatus": "completed"}, "parsed": {"outcome": "answered"},
               "source": "callback"}
    conn.execute(
        f"INSERT INTO call_event (provider, account_id, event_key, kind, payload, received_at, applied_at, "
        f"attempt_id, rejected_reason) VALUES ('plivo', %s, %s, 'hangup', %s, {received}, "
        f"CASE WHEN %s THEN {received} END, %s, %s)",
        (account_id, key, orjson.dumps(payload).decode(), applied, attempt, reason))
    return key


@pytest.fixture()
def data(database_url: str) -> Iterator[Fixture]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account = add_account(conn, name=f"retention-{uuid.uuid4().hex[:8]}", provider="plivo",
                              auth_id="MARETENTION", auth_token="retention-token", cps=5, max_concurrent=5,
                              base_url="http://127.0.0.1:9")
        row = conn.execute("INSERT INTO campaign (name, account_id, caller_id, state) VALUES "
                           "('retention', %s, '+14155550100', 'completed') RETURNING id",
                           (account,)).fetchone()
        assert row is not None
        campaign = int(row[0])
        settled = _attempt(conn, campaign, account, 1, "completed")
        ringing = _attempt(conn, campaign, account, 2, "ringing")
        doomed = {
            _event(conn, account, attempt=settled, received=OLD, applied=True),
            _event(conn, account, attempt=None, received=OLD, applied=True, reason="set aside: bad value"),
        }
        kept = {
            _event(conn, account, attempt=settled, received=OLD, applied=True,
                   raw={"RecordUrl": "https://recordings.example/r1.mp3"}),  # the export reads it
            _event(conn, account, attempt=settled, received=NEW, applied=True),
            _event(conn, account, attempt=ringing, received=OLD, applied=True),  # its call is still open
            _event(conn, account, attempt=None, received=OLD, applied=False),  # never applied
        }
        for received in (OLD, NEW):
            conn.execute("INSERT INTO rejected_callback (provider, account_id, kind, reason, body, "
                         f"received_at) VALUES ('plivo', %s, 'hangup', 'bad', 'x', {received})", (account,))
            conn.execute(f"INSERT INTO rejected_callback_hour (account_id, hour, received) "
                         f"VALUES (%s, date_trunc('hour', {received}), 3)", (account,))
        yield Fixture(account, campaign, settled, ringing, doomed, kept)


def _event_keys(conn: psycopg.Connection, account_id: int) -> set[str]:
    rows = conn.execute("SELECT event_key FROM call_event WHERE account_id = %s", (account_id,))
    return {r[0] for r in rows}


def _ages(conn: psycopg.Connection, table: str, column: str, account_id: int) -> list[bool]:
    """For each row of the account: is it newer than 30 days?"""
    return sorted(r[0] for r in conn.execute(
        f"SELECT {column} > now() - interval '30 days' FROM {table} WHERE account_id = %s", (account_id,)))


def _results(conn: psycopg.Connection, campaign_id: int) -> str:
    out = io.StringIO()
    write_results_csv(conn, campaign_id, out)
    return out.getvalue()


def test_prune_deletes_old_applied_events_of_settled_calls_and_old_refusals_and_nothing_else(
        data: Fixture, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        attempts_before = conn.execute("SELECT * FROM call_attempt WHERE campaign_id = %s ORDER BY id",
                                       (data.campaign_id,)).fetchall()
        report = prune(conn, older_than=THIRTY_DAYS)
        assert _event_keys(conn, data.account_id) == data.kept
        assert conn.execute("SELECT * FROM call_attempt WHERE campaign_id = %s ORDER BY id",
                            (data.campaign_id,)).fetchall() == attempts_before, "final states untouched"
        assert _ages(conn, "rejected_callback", "received_at", data.account_id) == [True]
        assert _ages(conn, "rejected_callback_hour", "hour", data.account_id) == [True]
    assert report.deleted["call_event"] >= len(data.doomed)


def test_a_results_export_is_the_same_after_a_prune(data: Fixture, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        before = _results(conn, data.campaign_id)
        prune(conn, older_than=THIRTY_DAYS)
        after = _results(conn, data.campaign_id)
    assert after == before
    assert "https://recordings.example/r1.mp3" in after and ",answered," in after


def test_each_batch_is_bounded_and_committed_before_the_next(data: Fixture, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(11):
            data.doomed.add(_event(conn, data.account_id, attempt=data.settled, received=OLD, applied=True))
    seen: list[tuple[str, int, int]] = []
    with psycopg.connect(database_url, autocommit=True) as outside:
        def committed(table: str, deleted: int) -> None:  # read from another session: only commits show
            seen.append((table, deleted, len(_event_keys(outside, data.account_id) & data.doomed)))

        with psycopg.connect(database_url) as conn:
            prune(conn, older_than=THIRTY_DAYS, batch=5, on_batch=committed)
    events = [(deleted, left) for table, deleted, left in seen if table == "call_event"]
    assert all(deleted <= 5 for deleted, _ in events)
    assert [deleted for deleted, _ in events][:2] == [5, 5], events  # 13 doomed rows: 5, 5, 3 (and 0)
    left = [left for _, left in events]
    assert left[:3] == [8, 3, 0], "each batch was committed on its own"


def test_dialer_prune_on_the_command_line(data: Fixture, database_url: str) -> None:
    script = Path(sys.executable).with_name("dialer")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "workers.entrypoints.cli"]
    done = subprocess.run([*argv, "prune", "--older-than", "30d", "--batch", "2"], capture_output=True,
                          text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "pruned what was received before" in done.stdout and "call_event" in done.stdout
    with psycopg.connect(database_url) as conn:
        assert _event_keys(conn, data.account_id) == data.kept
    refused = subprocess.run([*argv, "prune", "--older-than", "30"], capture_output=True, text=True,
                             timeout=60, env=os.environ.copy())
    assert refused.returncode == 2 and "not a duration" in refused.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
    ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), (" 7D ", timedelta(days=7)),
])
def test_durations_read_as_operators_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "0d", "-1d", "1.5d", "30 days", "", "1y"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_beat_task_is_off_by_default_and_prunes_daily_when_set(data: Fixture, database_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.runtime import tasks
    from workers.runtime.celery_app import PRUNE_INTERVAL_S, make_app

    monkeypatch.delenv("DIALER_PRUNE_OLDER_THAN", raising=False)
    get_settings.cache_clear()
    try:
        assert "prune" not in make_app().conf.beat_schedule
        assert tasks.prune_old_rows() is None
        monkeypatch.setenv("DIALER_PRUNE_OLDER_THAN", "30d")
        get_settings.cache_clear()
        entry = make_app().conf.beat_schedule["prune"]
        assert entry["task"] == "workers.tasks.prune_old_rows"
        assert entry["schedule"] == PRUNE_INTERVAL_S == 86400
        deleted = tasks.prune_old_rows()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert deleted is not None and deleted["call_event"] >= len(data.doomed)
    with psycopg.connect(database_url) as conn:
        assert _event_keys(conn, data.account_id) == data.kept
