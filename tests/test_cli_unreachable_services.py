"""An unreachable Postgres or Redis gives one clear line naming the URL and how to start it, never a
traceback, whichever command meets it first."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

DIALER = [sys.executable, "-c", "from workers.entrypoints.cli import main; main()"]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DIALER, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


@pytest.mark.parametrize("args", [["campaign", "list"], ["db", "init"], ["api"], ["worker"], ["beat"]])
def test_postgres_down_is_one_line_with_the_fix(args: list[str]) -> None:
    result = _run(args, DIALER_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5999/dialer")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:5999" in lines[0] and "pg_ctlcluster" in lines[0]


@pytest.mark.parametrize("args", [["worker"], ["beat"], ["api"]])
def test_redis_down_is_one_line_with_the_fix(args: list[str], database_url: str) -> None:
    result = _run(args, DIALER_REDIS_URL="redis://127.0.0.1:6999/0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "redis://127.0.0.1:6999/0" in lines[0] and "redis-server" in lines[0]
