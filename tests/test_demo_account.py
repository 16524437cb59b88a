"""The demo's simulator account: added on the first run, updated after; and only "no such account" counts
as a first run, so a database error reaches the operator instead of a misleading "already exists"."""

from __future__ import annotations

import psycopg
import pytest

from workers.entrypoints.demo import demo_account


def _accounts_named_demo(conn: psycopg.Connection) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT id, base_url FROM provider_account WHERE name = 'demo-simulator'").fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_the_demo_account_is_added_once_then_updated(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        first = demo_account(conn, "http://127.0.0.1:1", 50)
        again = demo_account(conn, "http://127.0.0.1:2", 60)
        assert again == first
        assert _accounts_named_demo(conn) == [(first, "http://127.0.0.1:2")]


def test_a_database_error_is_not_taken_for_a_first_run(database_url: str) -> None:
    with psycopg.connect(database_url) as setup:
        account_id = demo_account(setup, "http://127.0.0.1:1", 50)
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as conn:
        holder.execute("SELECT 1 FROM provider_account WHERE id = %s FOR UPDATE", (account_id,))
        conn.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            demo_account(conn, "http://127.0.0.1:3", 50)
        conn.rollback()
        holder.rollback()
        assert _accounts_named_demo(conn) == [(account_id, "http://127.0.0.1:1")]
