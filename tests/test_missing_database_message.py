"""When Postgres answers but the dialer's database, or its schema, is not there, every command says so and
names `dialer db init` (issue 22), where it used to say Postgres was not reachable and how to start it
(tests/test_cli_unreachable_services.py keeps that message for a server that does not answer)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import ADMIN_URL

DIALER = [sys.executable, "-c", "from workers.entrypoints.cli import main; main()"]
HOST = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DIALER, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DIALER_DATABASE_URL": database_url})


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture()
def empty_database() -> Iterator[str]:
    """A database that exists but has no dialer schema."""
    name = f"dialer_empty_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("args", [["campaign", "list"], ["campaign", "show", "1"], ["worker"], ["api"]])
def test_a_missing_database_names_dialer_db_init(args: list[str]) -> None:
    name = f"dialer_absent_{secrets.token_hex(4)}"
    line = _one_line(_run(args, f"{HOST}/{name}"))
    assert f"{name} but that database does not exist" in line and "dialer db init" in line
    assert "pg_ctlcluster" not in line and "not reachable" not in line


@pytest.mark.parametrize("args", [["campaign", "list"], ["account", "list"]])
def test_a_database_without_the_schema_names_dialer_db_init(args: list[str], empty_database: str) -> None:
    line = _one_line(_run(args, f"{HOST}/{empty_database}"))
    assert "has no dialer schema" in line and "dialer db init" in line and "pg_ctlcluster" not in line

