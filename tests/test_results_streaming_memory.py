"""A results export streams (issue 22, "1M rows export in bounded memory"): 60,000 destinations with a
call each (200,000 under `make soak`) are written as JSON Lines (and CSV under soak) while the Python
heap's peak stays a few megabytes, far under what holding the export (tens of megabytes) would take. Both
formats share the one cursor loop; tracemalloc slows the export several times, hence the short default.
Real Postgres; the export every CLI, API and console download uses (results_export.write_results)."""

from __future__ import annotations

import os
import secrets
import tracemalloc
from collections.abc import Iterator

import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.db import connect
from campaigns.results_export import write_results
from campaigns.results_schema import CALL_FIELDS, ResultFormat

SOAK = os.environ.get("DIALER_SOAK") == "1"
ROWS = 200_000 if SOAK else 60_000
PEAK_BOUND = 8 * 2**20  # bytes of Python heap (5.4-5.8 MiB measured); 60k rows of JSON Lines are about 29 MB
FORMATS = [ResultFormat.JSONL, ResultFormat.CSV] if SOAK else [ResultFormat.JSONL]


class CountingSink:
    """A text handle that keeps only what it was given in total: bytes, lines and the first line."""

    def __init__(self) -> None:
        self.chars = self.lines = 0
        self.first_line = ""

    def write(self, text: str) -> int:
        if not self.first_line:
            self.first_line = text.split("\n", 1)[0]
        self.chars += len(text)
        self.lines += text.count("\n")
        return len(text)


@pytest.fixture(scope="module")
def big_campaign(database_url: str) -> Iterator[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        account = add_account(conn, name=f"stream-{secrets.token_hex(3)}", provider="plivo",
                              auth_id="MASTREAM", auth_token="t", cps=5, max_concurrent=5)
        found = conn.execute(
            "INSERT INTO campaign (name, account_id, state, input_columns) "
            "VALUES ('streaming', %s, 'completed', ARRAY['customer_id', 'name', 'phone']) RETURNING id",
            (account,)).fetchone()
        assert found is not None
        campaign_id = int(found[0])
        conn.execute(
            "INSERT INTO destination (campaign_id, line_no, number, variables, timezone, status, outcome, "
            "attempts_made) SELECT %s, g + 1, '+1415' || lpad(g::text, 7, '0'), "
            "jsonb_build_object('customer_id', 'C-' || g, 'name', 'Customer number ' || g), "
            "'America/Los_Angeles', 'done', 'answered', 1 FROM generate_series(1, %s) g",
            (campaign_id, ROWS))
        conn.execute(
            "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, "
            "request_uuid, call_uuid, provider_status, outcome, duration, billed_duration, answer_at, "
            "end_at, lease_expires_at) SELECT id, campaign_id, %s, 1, 'completed', 'req-' || id, "
            "'call-' || id, 'completed', 'answered', 30, 60, now() - interval '30 seconds', now(), now() "
            "FROM destination WHERE campaign_id = %s", (account, campaign_id))
        conn.execute("ANALYZE destination; ANALYZE call_attempt")
    yield campaign_id
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM campaign WHERE id = %s", (campaign_id,))


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_of_many_rows_keeps_the_heap_under_a_bound(big_campaign: int, fmt: ResultFormat) -> None:
    sink = CountingSink()
    with connect() as conn:
        tracemalloc.start()
        try:
            write_results(conn, big_campaign, sink, fmt)  # type: ignore[arg-type]  # a write() is all it needs
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sink.lines == ROWS + (1 if fmt is ResultFormat.CSV else 0)
    if fmt is ResultFormat.CSV:
        assert sink.first_line.rstrip("\r").split(",") == ["customer_id", "name", "phone", *CALL_FIELDS]
    else:
        assert sink.first_line.startswith(
            '{"customer_id":"C-1","name":"Customer number 1","phone":"+14150000001"')
    assert sink.chars > 3 * PEAK_BOUND, "the export is not big enough to tell streaming from holding it"
    assert peak < PEAK_BOUND, f"peak {peak / 2**20:.1f} MiB exporting {sink.chars / 2**20:.0f} MiB"
