"""Results carry the call's recording URL where the carrier's callback gave one (TryVox hangups carry
"recording URLs if applicable", page, Webhooks, Hangup URL; Plivo/Vobiz a RecordUrl), in both results CSVs and
the API's,
read from the attempt's stored events; both CSVs are safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from campaigns.accounts import add_account
from campaigns.results_export import write_results_csv, write_run_results_csv
from tests.engine_harness import load_campaign

NUMBERS = ["+14155552671", "+14155552672", "+14155552673", "+14155552674", "+14155552675", "+14155552676"]
TRYVOX_URLS = ["https://rec.example/2a.mp3", "https://rec.example/2b.mp3"]


def _attempt(conn: psycopg.Connection, campaign_id: int, account_id: int, number: str, attempt_no: int,
             spoken_text: str | None = None) -> int:
    row = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, outcome, "
        "lease_expires_at, spoken_text) SELECT id, campaign_id, %s, %s, 'completed', 'answered', now(), %s "
        "FROM destination WHERE campaign_id = %s AND number = %s RETURNING id",
        (account_id, attempt_no, spoken_text, campaign_id, number)).fetchone()
    assert row is not None
    conn.execute("UPDATE destination SET status = 'done', outcome = 'answered', attempts_made = %s "
                 "WHERE campaign_id = %s AND number = %s", (attempt_no, campaign_id, number))
    return int(row[0])


def _event(conn: psycopg.Connection, attempt_id: int, kind: str, raw: Any, parsed: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO call_event (provider, event_key, kind, payload, attempt_id, applied_at) "
        "VALUES ('tryvox', %s, %s, %s, %s, now())",
        (uuid.uuid4().hex, kind, Jsonb({"raw": raw, "parsed": parsed, "source": "callback"}), attempt_id))


@pytest.fixture(scope="module")
def campaign_id(database_url: str) -> int:
    """Line 2: a Plivo-style RecordUrl. Line 3: two attempts, the last with TryVox's list of URLs (and the
    first in our parsed reading). Line 4: a hangup with no recording. Line 5: never dialed. Line 6: a list in
    camelCase. Line 7: an empty list beside our parsed reading."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id = add_account(conn, name=f"rec-{secrets.token_hex(3)}", provider="tryvox", auth_id="AREC",
                                 auth_token="t", cps=1, max_concurrent=1)
        campaign = load_campaign(f"rec-{secrets.token_hex(3)}", NUMBERS)
        first = _attempt(conn, campaign, account_id, NUMBERS[0], 1, spoken_text="=HYPERLINK(\"x\")")
        _event(conn, first, "answer", {"CallStatus": "in-progress"}, {"outcome": None})
        plivo_hangup = {"CallStatus": "completed", "RecordUrl": "https://rec.example/1.mp3"}
        _event(conn, first, "hangup", plivo_hangup, {})
        older = _attempt(conn, campaign, account_id, NUMBERS[1], 1)
        _event(conn, older, "hangup", {}, {"recording_url": "https://rec.example/old.mp3"})
        last = _attempt(conn, campaign, account_id, NUMBERS[1], 2)
        _event(conn, last, "hangup", {"recording_urls": TRYVOX_URLS}, {"recording_url": TRYVOX_URLS[0]})
        _event(conn, last, "status", {"event": "billing"}, {})  # a later event without one
        bare = _attempt(conn, campaign, account_id, NUMBERS[2], 1)
        _event(conn, bare, "hangup", {"recording_url": None, "RecordUrl": ""}, {})
        camel = _attempt(conn, campaign, account_id, NUMBERS[4], 1)  # TryVox's camelCase reading
        _event(conn, camel, "hangup", {"recordingUrls": ["https://rec.example/5a.mp3", "https://rec.example/5b.mp3"]},
               {"recording_url": "https://rec.example/5a.mp3"})
        empty_list = _attempt(conn, campaign, account_id, NUMBERS[5], 1)
        _event(conn, empty_list, "hangup", {"recording_urls": []}, {"recording_url": "https://rec.example/6.mp3"})
    return campaign


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


EXPECTED = {
    "+14155552671": "https://rec.example/1.mp3",
    "+14155552672": " ".join(TRYVOX_URLS),
    "+14155552673": "",
    "+14155552674": "",
    "+14155552675": "https://rec.example/5a.mp3 https://rec.example/5b.mp3",
    "+14155552676": "https://rec.example/6.mp3",
}


def test_the_results_csv_has_each_destinations_recording_url(database_url: str, campaign_id: int) -> None:
    handle = io.StringIO()
    with psycopg.connect(database_url) as conn:
        write_results_csv(conn, campaign_id, handle)
    assert {r["number"]: r["recording_url"] for r in _rows(handle.getvalue())} == EXPECTED


def test_the_run_results_csv_has_the_same_recording_urls_and_is_spreadsheet_safe(
    database_url: str, campaign_id: int
) -> None:
    handle = io.StringIO()
    with psycopg.connect(database_url) as conn:
        write_run_results_csv(conn, campaign_id, handle)
    rows = _rows(handle.getvalue())
    assert {r["number"]: r["recording_url"] for r in rows} == {n: u for n, u in EXPECTED.items()
                                                               if n != "+14155552674"}
    assert [r["spoken_text"] for r in rows if r["number"] == NUMBERS[0]] == ["'=HYPERLINK(\"x\")"]


def test_the_api_results_answer_the_recording_url(client: TestClient, auth: dict[str, str],
                                                 campaign_id: int) -> None:
    response = client.get(f"/campaigns/{campaign_id}/results", headers=auth)
    assert response.status_code == 200, response.text
    assert {r["number"]: r["recording_url"] for r in _rows(response.text)} == EXPECTED
    per_run = client.get(f"/campaigns/{campaign_id}/runs/results", headers=auth)
    assert per_run.status_code == 200, per_run.text
    assert {r["number"]: r["recording_url"] for r in _rows(per_run.text)}[NUMBERS[1]] == " ".join(TRYVOX_URLS)
