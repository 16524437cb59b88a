"""Benchmark of a results export: `dialer campaign results` of a campaign of N destinations, each with a
call, as CSV and as JSON Lines, written to /dev/null by the real CLI process.

    python -m bench.results_bench [--rows 1000000] [--format csv|jsonl]

Seeds (once per size, in the database of DIALER_DATABASE_URL) a completed campaign whose upload had three
columns (customer_id, name, phone) and whose destinations each have one answered call, with SQL
(generate_series), not through the loader and the dialer: the export is what is measured. Prints, for each
format, the wall time, rows/s, the bytes written and the CLI process's peak RSS (its ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import psycopg

from campaigns.accounts import add_account
from campaigns.config import get_settings
from campaigns.db import init_database
from workers.providers import registry  # noqa: F401  (add_account checks the provider against it)

SEED_CAMPAIGN = """
INSERT INTO campaign (name, account_id, state, input_columns)
VALUES (%s, %s, 'completed', ARRAY['customer_id', 'name', 'phone']) RETURNING id"""
SEED_DESTINATIONS = """
INSERT INTO destination (campaign_id, line_no, number, variables, timezone, status, outcome, attempts_made)
SELECT %s, g + 1, '+1' || (2000000000 + g)::text,
       jsonb_build_object('customer_id', 'C-' || g, 'name', 'Customer number ' || g),
       'America/New_York', 'done', 'answered', 1
FROM generate_series(1, %s) g"""
SEED_CALLS = """
INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, request_uuid,
                          call_uuid, provider_status, outcome, duration, billed_duration, answer_at, end_at,
                          lease_expires_at)
SELECT id, campaign_id, %s, 1, 'completed', gen_random_uuid()::text, gen_random_uuid()::text, 'completed',
       'answered', 30, 60, now() - interval '30 seconds', now(), now()
FROM destination WHERE campaign_id = %s"""


def seeded_campaign(url: str, rows: int) -> int:
    """The bench campaign of `rows` destinations, made once."""
    name = f"results-bench-{rows}"
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT id FROM campaign WHERE name = %s", (name,)).fetchone()
        if found:
            return int(found[0])
        started = time.monotonic()
        account = conn.execute("SELECT id FROM provider_account WHERE name = 'results-bench'").fetchone()
        account_id = int(account[0]) if account else add_account(
            conn, name="results-bench", provider="plivo", auth_id="MABENCH", auth_token="t", cps=10,
            max_concurrent=10)
        created = conn.execute(SEED_CAMPAIGN, (name, account_id)).fetchone()
        assert created is not None
        campaign_id = int(created[0])
        conn.execute(SEED_DESTINATIONS, (campaign_id, rows))
        conn.execute(SEED_CALLS, (account_id, campaign_id))
        conn.execute("ANALYZE destination")
        conn.execute("ANALYZE call_attempt")
        print(f"seeded campaign {campaign_id}: {rows:,} destinations and calls in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        return campaign_id


def export_once(campaign_id: int, fmt: str) -> tuple[float, int, int]:
    """(seconds, bytes written, peak RSS in KiB) of one `dialer campaign results` to /dev/null."""
    out = f"/tmp/results-bench-{os.getpid()}.{fmt}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "workers.entrypoints.cli", "campaign", "results", str(campaign_id),
                    "--format", fmt, "--out", out], check=True, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size = os.path.getsize(out)
    os.unlink(out)
    # ru_maxrss of children is the largest of any child so far: give one --format per invocation for a
    # figure of that format alone (bench/RESULTS.md does).
    return seconds, size, max(peak, before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time and peak memory of a results export.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), action="append")
    args = parser.parse_args(argv)
    init_database()
    campaign_id = seeded_campaign(get_settings().psycopg_url, args.rows)
    for fmt in args.format or ["csv", "jsonl"]:
        seconds, size, peak_kib = export_once(campaign_id, fmt)
        print(f"{fmt}: {args.rows:,} rows in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s), "
              f"{size / 2**20:,.0f} MiB written, CLI peak RSS {peak_kib / 1024:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
