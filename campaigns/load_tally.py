"""Every campaign load's rows and time, kept in Postgres (loader_tally) by the load itself, so /metrics counts
a load whichever process ran it: the CLI's, the API's or the console's (the CLI process is never scraped)."""

from __future__ import annotations

import psycopg

ADD_LOAD = """
INSERT INTO loader_tally (singleton, rows_read, seconds) VALUES (true, %s, %s)
ON CONFLICT (singleton) DO UPDATE
SET rows_read = loader_tally.rows_read + EXCLUDED.rows_read, seconds = loader_tally.seconds + EXCLUDED.seconds
"""
READ = "SELECT rows_read, seconds FROM loader_tally"


def add_load(conn: psycopg.Connection, *, rows: int, seconds: float) -> None:
    """Count one load, in the load's own transaction (last, as it locks the one row until the commit)."""
    conn.execute(ADD_LOAD, (rows, max(seconds, 0.0)))


def loads_so_far(conn: psycopg.Connection) -> tuple[int, float]:
    """(rows read, seconds spent) by every load of this database."""
    row = conn.execute(READ).fetchone()
    return (int(row[0]), float(row[1])) if row else (0, 0.0)
