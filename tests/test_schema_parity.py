"""schema.sql is canonical and campaigns/models.py mirrors it: built side by side, they must not differ."""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, text

from campaigns.db import SCHEMA_PATH
from campaigns.models import SQLModel

COLUMNS = """
SELECT table_name, column_name, data_type, udt_name, is_nullable
FROM information_schema.columns WHERE table_schema = %s ORDER BY table_name, column_name
"""
UNIQUES = """
SELECT tc.table_name, string_agg(kcu.column_name, ',' ORDER BY kcu.ordinal_position), tc.constraint_type
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
WHERE tc.table_schema = %s AND tc.constraint_type IN ('UNIQUE', 'PRIMARY KEY', 'FOREIGN KEY')
GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type ORDER BY 1, 2, 3
"""


def _describe(conn: psycopg.Connection, schema: str) -> tuple[list[tuple], list[tuple]]:
    return (conn.execute(COLUMNS, (schema,)).fetchall(), conn.execute(UNIQUES, (schema,)).fetchall())


def test_models_and_schema_sql_define_the_same_tables(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in ("parity_sql", "parity_models"):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute("SET search_path TO parity_sql")
        conn.execute(SCHEMA_PATH.read_text())
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as sa_conn:
            sa_conn.execute(text("SET search_path TO parity_models"))
            SQLModel.metadata.create_all(sa_conn)
        engine.dispose()
        try:
            from_sql = _describe(conn, "parity_sql")
            from_models = _describe(conn, "parity_models")
        finally:
            for schema in ("parity_sql", "parity_models"):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    assert from_sql[0], "schema.sql created no columns"
    assert from_models[0] == from_sql[0]
    assert from_models[1] == from_sql[1]


def test_schema_sql_applies_twice_without_error(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA_PATH.read_text())
        conn.execute(SCHEMA_PATH.read_text())
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
            ).fetchall()
        }
    assert {
        "provider_account",
        "campaign",
        "destination",
        "call_attempt",
        "call_event",
        "dnc_number",
        "account_dnc_number",
        "rejected_row",
        "api_key",
    } <= tables
