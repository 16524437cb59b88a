"""Redis loses the call-limit schedule (FLUSHALL, a restart without persistence) while calls ring that only
the dialer can end: the reaper's tick restores each request's check from Postgres, and the owner's pass then
hangs the calls up. A private redis-server is flushed (tests/private_services.py), never the shared one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis

from tests.polling import wait_for
from tests.private_services import PrivateRedis, private_redis
from tests.sim_helpers import RunningSimulator
from tests.test_call_limits import Campaign, ledger_call, scheduled_in
from tests.test_call_limits import conn as conn  # noqa: F401 (a fixture)
from tests.test_call_limits import sim as sim  # noqa: F401 (a fixture)
from workers.dialing.limit_checks import schedule_first_check
from workers.housekeeping.call_limits import ASK_WINDOW_S, enforce_call_limits
from workers.housekeeping.reaper import reap_expired_attempts
from workers.providers.http import make_client
from workers.providers.registry import adapter_for
from workers.ratelimit import Budgets

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture()
def lost_redis(redis_server: PrivateRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_checks_lost_with_redis_are_restored_by_the_reaper_and_the_calls_still_hung_up(
        sim: RunningSimulator, conn: psycopg.Connection, redis_server: PrivateRedis,
        lost_redis: redis.Redis) -> None:
    voipbin = Campaign(conn, sim, "voipbin")
    vobiz = Campaign(conn, sim, "vobiz", ring_timeout=5, time_limit=600)  # the carrier's bound: 605 s
    ring_only = Campaign(conn, sim, "vobiz", account_options={"hangup_on_ring": "ring"}, ring_timeout=5)
    ringing = {uuid.uuid4(): (voipbin, voipbin.place_call("+16465550201"), 21),
               uuid.uuid4(): (vobiz, vobiz.place_call("+16465550202"), 6)}
    mine: set[int] = set()
    for batch_id, (campaign, call_id, age) in ringing.items():  # each sent just past its ring timeout
        mine.add(campaign.attempt(batch_id, call_id, status="ringing", sent_age_s=age))
        adapter = adapter_for(campaign.creds.provider)
        assert schedule_first_check(lost_redis, adapter, campaign.creds, batch_id, campaign.options,
                                    time.time() - age)
    left_to_carrier, given_up = uuid.uuid4(), uuid.uuid4()
    ring_only.attempt(left_to_carrier, "vobiz-ring-only-call", status="ringing", sent_age_s=6)
    voipbin.attempt(given_up, "voipbin-asked-long-ago", status="ringing", sent_age_s=21 + ASK_WINDOW_S)

    redis_server.flushall()
    with make_client() as http:
        assert enforce_call_limits(conn, lost_redis, http).checked == 0  # the schedule is gone
        assert reap_expired_attempts(conn, http, Budgets(lost_redis)).limit_checks_restored >= 2
        # Restored at their deadline (already past), and only where the dialer still has a limit to watch.
        assert [scheduled_in(lost_redis, b) for b in (left_to_carrier, given_up)] == [None, None]
        restored = [scheduled_in(lost_redis, b) for b in ringing]
        assert all(due is not None and due <= 0 for due in restored), restored
        # (Other modules' open attempts of this test session are restored and checked too.)
        report = enforce_call_limits(conn, lost_redis, http)
        assert report.hung_up >= 2 and not [e for e in report.errors if int(e.split()[1][:-1]) in mine]
        wait_for(lambda: all(ledger_call(sim, c)["hung_up_by_api"] for _, c, _ in ringing.values()), 5,
                 "both calls hung up")
        # The next tick finds every open request scheduled: nothing restored twice.
        assert reap_expired_attempts(conn, http, Budgets(lost_redis)).limit_checks_restored == 0
