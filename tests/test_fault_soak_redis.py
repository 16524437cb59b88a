"""The Redis soak scenario (`make soak`): a module of its own, so that no other stack is alive while it
runs. Two stacks on one database with two Redis servers are two independent budgets for one account:
the other stack's dispatcher would dial this campaign too, and the carrier would rightly answer 429."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.engine_harness import Stack
from tests.fault_harness import FaultRun, supervise
from tests.private_services import PrivateRedis
from tests.test_fault_redis import conn, redis_server, stack  # noqa: F401 - the same private-Redis stack
from tests.test_fault_soak import DESTINATIONS, SECONDS, _assert_target
from tests.test_fault_suite import _sim

pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(SECONDS) * 3 + 600)]


def test_soak_redis_flushed_and_restarted_mid_campaign(
    stack: Stack, redis_server: PrivateRedis, conn: psycopg.Connection  # noqa: F811 - fixtures
) -> None:
    """100 CPS in bulk requests; FLUSHALL at a quarter, SIGKILL and an empty restart at three fifths.
    0 429s, and the Celery messages lost with Redis are recovered by the queued leases. (Bulk: at 100
    single-destination requests a second this shared 2-core machine sends some late enough for the odd
    429 whatever Redis does; the short suite covers single-destination requests at 50 CPS.)"""
    with _sim(45) as sim:
        run = FaultRun(sim, stack, conn, name="soak-redis", destinations=min(DESTINATIONS, 5000),
                       cps=100, bulk=True)
        run.start()
        while run.dialed() < run.size // 4:
            time.sleep(0.2)
        run.mark("flushall")
        redis_server.flushall()
        while run.dialed() < run.size * 3 // 5:
            time.sleep(0.2)
        run.mark("restart")
        redis_server.restart(down_s=1.0)
        run.until_complete(SECONDS, during=supervise(stack))
        figures = run.figures(settle_s=60)
    _assert_target(figures)
