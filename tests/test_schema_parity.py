"""schema.sql is canonical and campaigns/models.py mirrors it: built side by side, they must not differ.
The API's shapes take their columns from the models' Bases, so a column's type is written once."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from campaigns.db import SCHEMA_PATH
from campaigns.models import (
    Campaign,
    CampaignBase,
    CampaignRun,
    CampaignRunBase,
    CampaignSettingsBase,
    CampaignTimestamps,
    RejectedRow,
    RejectedRowBase,
    SQLModel,
)
from campaigns.reports import LoadReport
from workers.entrypoints.api.routes_runs import RunOut
from workers.entrypoints.api.schemas import (
    CampaignSettingsOut,
    CampaignStatusOut,
    CampaignSummary,
    RejectedRowOut,
)

BASES: list[tuple[type[SQLModel], type[SQLModel]]] = [
    (CampaignBase, Campaign),
    (CampaignSettingsBase, Campaign),
    (CampaignTimestamps, Campaign),
    (RejectedRowBase, RejectedRow),
    (CampaignRunBase, CampaignRun),
]
# Each response shape of the API and the table whose columns it shows.
SHAPES: list[tuple[type[BaseModel], type[SQLModel]]] = [
    (CampaignSummary, Campaign),
    (CampaignSettingsOut, Campaign),
    (CampaignStatusOut, Campaign),
    (LoadReport, Campaign),
    (RejectedRowOut, RejectedRow),
    (RunOut, CampaignRun),
]

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



@pytest.mark.parametrize(("base", "table"), BASES, ids=lambda c: c.__name__)
def test_a_base_column_is_declared_once(base: type[SQLModel], table: type[SQLModel]) -> None:
    columns = table.__table__.columns  # type: ignore[attr-defined]
    for name, field in base.model_fields.items():
        # The table's column is the very Column the Base declared: the table did not declare it again.
        assert columns[name] is field.sa_column, f"{table.__name__}.{name} is declared again"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("shape", "table"), SHAPES, ids=lambda c: c.__name__)
def test_a_response_field_named_as_a_column_has_its_type(shape: type[BaseModel],
                                                          table: type[SQLModel]) -> None:
    shown, stored = shape.model_fields, table.model_fields
    shared = set(shown) & set(stored)
    assert shared, f"{shape.__name__} shows no column of {table.__name__}"
    for name in shared:
        assert shown[name].annotation == stored[name].annotation, f"{shape.__name__}.{name}"
