"""Redis loses its state mid-campaign (FLUSHALL, or a restart without persistence): the budgets are
rebuilt from Postgres before anything is sent again, so the carrier, which counts arrivals in a strict
sliding 1-second window, refuses nothing. Every process of the stack runs against a private redis-server
(tests/private_services.py); the machine's shared Redis is never flushed or restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.engine_harness import Stack, running_stack
from tests.fault_harness import FaultRun, supervise
from tests.private_services import PrivateRedis, pointed_at, private_redis
from tests.test_fault_suite import _sim

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def stack(redis_server: PrivateRedis, database_url: str) -> Iterator[Stack]:
    with pointed_at(redis_url=redis_server.url), running_stack(workers=3, threads=8) as stack:
        yield stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as connection:
        yield connection


def _when_dialed(run: FaultRun, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while run.dialed() < count:
        assert time.monotonic() < deadline, "dialing never got under way"
        time.sleep(0.05)


def test_flushall_mid_campaign_at_100_cps_gets_no_429(
    stack: Stack, redis_server: PrivateRedis, conn: psycopg.Connection
) -> None:
    """Bulk requests at 100 CPS; Redis flushed while the budget is saturated. Before the budgets epoch,
    the budgets restarted from zero and the carrier answered 429."""
    with _sim(31) as sim:
        run = FaultRun(sim, stack, conn, name="redis-flush", destinations=600, cps=100, bulk=True)
        run.start()
        _when_dialed(run, 200)
        run.mark("flushall")
        redis_server.flushall()
        run.until_complete(60, settle_s=6.0)
        figures = run.figures()
    assert figures.throttled_429 == 0 and figures.seconds_over_budget == 0, figures.line()
    assert figures.dialed_twice == 0 and figures.lost_results == 0 and figures.stranded == 0
    assert figures.dialed >= 400, "dialing went on after the flush"


def test_redis_restart_mid_campaign_gets_no_429(
    stack: Stack, redis_server: PrivateRedis, conn: psycopg.Connection
) -> None:
    """Single-destination requests at 50 CPS; redis-server SIGKILLed and back (empty) a second later. The
    Celery workers die with their broker connection (kombu), so a supervisor restarts them, as in
    production (docker-compose.yml: restart: unless-stopped)."""
    with _sim(32) as sim:
        run = FaultRun(sim, stack, conn, name="redis-restart", destinations=300, cps=50, bulk=False)
        run.start()
        _when_dialed(run, 100)
        run.mark("restart")
        redis_server.restart(down_s=1.0)
        run.until_complete(60, during=supervise(stack), settle_s=6.0)
        figures = run.figures()
    assert figures.throttled_429 == 0 and figures.seconds_over_budget == 0, figures.line()
    assert figures.dialed_twice == 0 and figures.lost_results == 0 and figures.stranded == 0
    assert figures.dialed >= 150, "dialing went on after the restart"
