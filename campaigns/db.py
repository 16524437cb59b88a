"""Connections to Postgres: a SQLAlchemy engine for SQLModel, raw psycopg connections for COPY and hot paths.

Nothing is built at import time; an engine is made per URL on first use.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import create_engine

from campaigns.config import get_settings
from campaigns.errors import ServiceUnavailable

# campaigns/schema.sql links to the canonical top-level schema.sql and ships as package data, so an installed
# package (the Docker image) finds it too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.sql"
POSTGRES_START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _redacted(url: str) -> str:
    """The URL without a password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class SchemaMissing(ServiceUnavailable):
    """Postgres answers but the dialer's database, or its tables, are not (all) there."""


# What the server says when it answers but has no such database (libpq gives no SQLSTATE for it).
_NO_DATABASE = re.compile(r'FATAL:\s+database "[^"]*" does not exist')


def unavailable(url: str, exc: BaseException) -> ServiceUnavailable:
    """The error for a failed connection: the database is missing (the fix is `dialer db init`), or the
    server cannot be reached (the fix is to start it)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _NO_DATABASE.search(str(exc)):
        return SchemaMissing(f"Postgres answers at {_redacted(url)} but that database does not exist; "
                             "create it with: dialer db init")
    return ServiceUnavailable(
        f"Postgres is not reachable at {_redacted(url)} ({first_line}); start it with: {POSTGRES_START_HINT}"
    )


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def get_engine() -> Engine:
    return engine_for(get_settings().database_url)


# Our queries are short and run thousands of times; when a cost estimate crosses jit_above_cost, Postgres
# spends tens of milliseconds compiling one (measured: 30 ms JIT for a 4 ms event-matching query).
SESSION_OPTIONS = "-c jit=off"


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """A raw psycopg connection; an unreachable server becomes ServiceUnavailable with the way to start it."""
    url = url or get_settings().psycopg_url
    try:
        return psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://", 1),
            autocommit=autocommit,
            connect_timeout=5,
            options=SESSION_OPTIONS,
        )
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from exc


# Tables every process needs; one missing means `dialer db init` has not run against this database.
REQUIRED_TABLES = ("provider_account", "campaign", "destination", "call_attempt", "call_event", "api_key",
                   "rejected_callback")
SCHEMA_ERRORS = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
                 psycopg.errors.UndefinedObject)


def schema_missing(url: str, what: str) -> SchemaMissing:
    return SchemaMissing(f"the database {_redacted(url)} has no dialer schema ({what}); "
                         "create it with: dialer db init")


def require_schema(conn: psycopg.Connection, url: str | None = None) -> None:
    """Raise SchemaMissing naming the first absent table; the one check every process makes at start."""
    row = conn.execute("SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NULL LIMIT 1",
                       (list(REQUIRED_TABLES),)).fetchone()
    if row is not None:
        raise schema_missing(url or get_settings().psycopg_url, f"no table {row[0]}")


def create_database_if_absent(url: str) -> bool:
    """Create the URL's database when it does not exist; True if it was created."""
    info = psycopg.conninfo.conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://", 1))
    dbname = str(info.get("dbname") or "postgres")
    admin = {key: str(value) for key, value in info.items() if value is not None} | {"dbname": "postgres"}
    try:
        with psycopg.connect(
            psycopg.conninfo.make_conninfo("", **admin), autocommit=True, connect_timeout=5
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from exc


def apply_schema(conn: psycopg.Connection) -> None:
    """Apply schema.sql; every statement in it is idempotent."""
    conn.execute(SCHEMA_PATH.read_text())


def init_database(url: str | None = None) -> bool:
    """Create the database if absent and apply the schema. Returns True if the database was created."""
    url = url or get_settings().psycopg_url
    created = create_database_if_absent(url)
    with connect(url) as conn:
        # One advisory lock so several processes starting at once do not race on CREATE TABLE IF NOT EXISTS.
        conn.execute("SELECT pg_advisory_xact_lock(7241001)")
        apply_schema(conn)
        conn.commit()
    return created
