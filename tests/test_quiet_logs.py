"""Quiet logs (issue 22): the first start on an empty Redis is not reported as a loss (no WARNING), while a
Redis that lost budgets Postgres knows of still is; and a worker started with `dialer worker`'s defaults
logs no INFO line through a short campaign, while `--loglevel INFO` shows its lifecycle without a line per
task. Real Postgres, Redis, Celery, API, beat and the carrier simulator."""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from campaigns.accounts import add_account
from campaigns.config import get_settings
from campaigns.db import init_database
from tests.conftest import ADMIN_URL
from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import start_simulator
from workers.ratelimit import Budgets
from workers.ratelimit.postgres_state import PostgresBudgetState

pytestmark = pytest.mark.timeout(240)

RECOVERY_LOGGER = "workers.ratelimit.recovery"
INFO_LINE = re.compile(r": INFO/")
PER_TASK_LINE = re.compile(r"Task \S+\[[0-9a-f-]+\] (received|succeeded|retry)")


@pytest.fixture()
def fresh_deployment(database_url: str, redis_client: redis.Redis,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of its own (nothing ever dialed) and a Redis prefix with nothing in it."""
    name = f"{database_url.rsplit('/', 1)[1]}_first_{secrets.token_hex(3)}"
    url = f"{database_url.rsplit('/', 1)[0]}/{name}"
    init_database(url)
    prefix = f"{os.environ['DIALER_REDIS_PREFIX']}-first"
    monkeypatch.setenv("DIALER_REDIS_PREFIX", prefix)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(key)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _book(budgets: Budgets, account_id: int) -> None:
    budgets.reserve(account_id, None, 1, 5.0, None, 2.0)


def test_the_first_start_on_an_empty_redis_logs_no_warning_and_a_real_loss_still_does(
        fresh_deployment: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    state = PostgresBudgetState(lambda: psycopg.connect(fresh_deployment, autocommit=True))
    budgets = Budgets(redis.Redis.from_url(get_settings().redis_url), state=state)
    with psycopg.connect(fresh_deployment, autocommit=True) as conn:
        account_id = add_account(conn, name="first-start", provider="plivo", auth_id="MAFIRSTSTART",
                                 auth_token="first-token", cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")

    with caplog.at_level(logging.INFO, logger=RECOVERY_LOGGER):
        _book(budgets, account_id)  # the first booking finds no budgets in Redis: the first start
    first = [r for r in caplog.records if r.name == RECOVERY_LOGGER]
    assert [r.levelname for r in first] == ["INFO"], [r.getMessage() for r in first]
    assert "first time" in first[0].getMessage()

    caplog.clear()
    state.save_rate(account_id, 3.0)  # a 429 lowered the rate: Postgres now knows of budget state
    for key in redis_client.scan_iter(match=f"{get_settings().redis_prefix}:*", count=1000):
        redis_client.delete(key)  # ... and Redis loses everything
    with caplog.at_level(logging.INFO, logger=RECOVERY_LOGGER):
        _book(budgets, account_id)
    lost = [r for r in caplog.records if r.name == RECOVERY_LOGGER]
    assert [r.levelname for r in lost] == ["WARNING"] and "lost the budgets" in lost[0].getMessage()


def _dialer_worker(env: dict[str, str], log: Path, name: str, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.entrypoints.cli", "worker", "--threads", "4",
                                 "--name", f"{name}-{os.getpid()}@%h", *extra],
                                env={**env, "DIALER_WORKER_METRICS_PORT": "0"}, stdout=out,
                                stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_worker_with_default_options_logs_no_info_line_through_a_campaign(
        database_url: str, redis_client: redis.Redis, db: psycopg.Connection) -> None:
    config: dict[str, Any] = {
        "accounts": [{"provider": "plivo", "auth_id": "MAQUIETLOGS", "auth_token": "tok-quiet", "cps": 5,
                      "max_concurrent": 50}],
        "outcomes": {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                     "talk_time": [1, 2], "ring_time": [1, 1]},
    }
    with start_simulator(config, speed=20.0, seed=3) as sim, \
            running_stack(workers=0, beat=True, api=True) as stack:
        quiet_log, info_log = stack.workdir / "quiet-worker.log", stack.workdir / "info-worker.log"
        workers = [_dialer_worker(stack.env, quiet_log, "quiet"),
                   _dialer_worker(stack.env, info_log, "info", "--loglevel", "INFO")]
        try:
            account_id = add_account(db, name="quiet-logs", provider="plivo", auth_id="MAQUIETLOGS",
                                     auth_token="tok-quiet", cps=5, max_concurrent=50, base_url=sim.base_url)
            campaign_id = load_campaign("quiet-logs", numbers(12, start=8300, area="646"))
            prepare_and_start(db, campaign_id, account_id)

            def finished() -> bool:
                row = db.execute("SELECT count(*) FILTER (WHERE status <> 'done'), count(*) FROM destination "
                                 "WHERE campaign_id = %s", (campaign_id,)).fetchone()
                return row is not None and row[0] == 0 and row[1] == 12

            wait_for(finished, 120, what=f"the campaign finishing\n{stack.logs()}")
        finally:
            for proc in workers:
                _stop(proc)
    quiet = quiet_log.read_text(errors="replace")
    assert [line for line in quiet.splitlines() if INFO_LINE.search(line)] == [], quiet[-3000:]
    info = info_log.read_text(errors="replace")
    assert "ready." in info, "--loglevel INFO shows the worker's lifecycle"
    assert [line for line in info.splitlines() if PER_TASK_LINE.search(line)] == [], info[-3000:]
