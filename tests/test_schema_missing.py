"""Every process started against a database without the schema (before `dialer db init`) says so in one
line, with the fix, instead of a traceback (per sweep, per task)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ADMIN_URL, TEST_DB
from tests.engine_harness import REPO

pytestmark = pytest.mark.timeout(120)
EMPTY_DB = f"{TEST_DB}_empty"


@pytest.fixture(scope="module")
def empty_env() -> Iterator[dict[str, str]]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{EMPTY_DB}"')
        conn.execute(f'CREATE DATABASE "{EMPTY_DB}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield {**os.environ, "DIALER_DATABASE_URL": f"{base}/{EMPTY_DB}"}
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{EMPTY_DB}" WITH (FORCE)')


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert out.returncode != 0
    assert lines and "dialer db init" in lines[-1] and "no dialer schema" in lines[-1], out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    return lines[-1]


def test_a_celery_worker_without_the_schema_stops_with_one_line(empty_env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.runtime.celery_app", "worker",
                          "-P", "solo", "-l", "WARNING", "--without-mingle", "--without-gossip",
                          "--without-heartbeat"],
                         cwd=REPO, env=empty_env, capture_output=True, text=True, timeout=90)
    _one_line(out)


DIALER = str(Path(sys.executable).parent / "dialer")


@pytest.mark.parametrize("command", [["api", "--port", "1"], ["worker"], ["campaign", "list"],
                                     ["account", "list"]])
def test_a_dialer_command_without_the_schema_stops_with_one_line(empty_env: dict[str, str],
                                                                 command: list[str]) -> None:
    out = subprocess.run([DIALER, *command], cwd=REPO, env=empty_env, capture_output=True, text=True,
                         timeout=60)
    line = _one_line(out)
    assert line.startswith("error:")
