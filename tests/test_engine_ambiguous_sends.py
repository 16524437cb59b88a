"""Ambiguous sends and pauses, end to end: real Celery workers, beat, the API, Postgres, Redis and the carrier
simulator, whose ledger is the witness of what reached the carrier.

Break 2 of issue 9: a carrier that places the calls and still answers 502/504 to the create request. The
answer is ambiguous, so the attempt stays open and the first call's own callbacks settle it: nobody is dialed
twice. A 5xx that placed nothing is retried only once its evidence window closes with no sign of the call.
A pause stops new calls within a second, counted by arrival at the carrier.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from campaigns import control
from campaigns.accounts import add_account
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator

pytestmark = pytest.mark.timeout(300)

SPEED = 20.0
QUICK_CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
               "talk_time": [2, 6], "ring_time": [1, 3]}
FINAL = ("done", "failed", "invalid", "dnc", "cancelled", "expired", "unknown")


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": [], "outcomes": QUICK_CALLS, "callbacks": {"attempts": 5, "backoff": 1.0}}
    with start_simulator(config, speed=SPEED, seed=19) as sim, running_stack(workers=2, threads=8) as stack:
        yield sim, stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as connection:
        yield connection


def _account(conn: psycopg.Connection, sim: RunningSimulator, auth_id: str, cps: float) -> int:
    sim.configure({"accounts": [{"provider": "plivo", "auth_id": auth_id, "auth_token": f"tok-{auth_id}",
                                 "cps": cps, "max_concurrent": 1000}]})
    account_id = add_account(conn, name=f"amb-{auth_id}", provider="plivo", auth_id=auth_id,
                             auth_token=f"tok-{auth_id}", cps=cps, max_concurrent=1000, base_url=sim.base_url)
    conn.commit()
    return account_id


def _calls(sim: RunningSimulator, auth_id: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["account"] == auth_id]


def _statuses(conn: psycopg.Connection, campaign_id: int) -> dict[str, int]:
    conn.commit()  # a fresh snapshot each poll
    rows = conn.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                        (campaign_id,)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _count(conn: psycopg.Connection, sql: str, *args: Any) -> int:
    conn.commit()  # a fresh snapshot each poll
    row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def _finished_or_redialed(conn: psycopg.Connection, sim: RunningSimulator, auth_id: str,
                          campaign_id: int, size: int) -> bool:
    """Every destination final, or someone already dialed twice (the break shows: stop waiting)."""
    per_destination = Counter(c["destination"] for c in _calls(sim, auth_id))
    if per_destination and max(per_destination.values()) > 1:
        return True
    return sum(n for s, n in _statuses(conn, campaign_id).items() if s in FINAL) == size


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_call_placed_but_answered_5xx_is_dialed_once_and_its_own_callbacks_settle_it(
    env, conn, bulk
) -> None:
    sim, _ = env
    auth_id = f"MAPLACED5XX{'B' if bulk else 'S'}"
    account_id = _account(conn, sim, auth_id, 20)
    campaign_id = load_campaign(f"placed-5xx-{bulk}", numbers(6, start=100 if bulk else 200, area="646"))
    sim.configure({"faults": {"api_placed_5xx": 1.0}})  # every create is placed, and answered 502/504
    try:
        prepare_and_start(conn, campaign_id, account_id,
                          provider_options={"ring_timeout": 30, "time_limit": 60, "bulk": bulk})
        wait_for(lambda: _finished_or_redialed(conn, sim, auth_id, campaign_id, 6), 60,
                 what="every destination final (or one dialed twice)")
    finally:
        sim.configure({"faults": {"api_placed_5xx": 0.0}})
    per_destination = Counter(c["destination"] for c in _calls(sim, auth_id))
    assert len(per_destination) == 6 and max(per_destination.values()) == 1, per_destination
    assert _statuses(conn, campaign_id) == {"done": 6}, "each first call's callbacks gave its result"
    attempts = conn.execute("SELECT status, outcome, count(*) FROM call_attempt WHERE campaign_id = %s "
                            "GROUP BY 1, 2", (campaign_id,)).fetchall()
    assert attempts == [("completed", "answered", 6)], "no attempt was failed under its live call"


def test_a_5xx_that_placed_nothing_is_retried_only_after_its_evidence_window(env, conn) -> None:
    sim, _ = env
    auth_id = "MANOTHING5XX"
    account_id = _account(conn, sim, auth_id, 20)
    campaign_id = load_campaign("nothing-5xx", numbers(4, start=300, area="646"))
    sim.configure({"faults": {"api_5xx": 1.0}})  # 500/502/503 without Retry-After, nothing placed
    try:
        prepare_and_start(conn, campaign_id, account_id,
                          provider_options={"ring_timeout": 30, "time_limit": 60, "bulk": False})
        wait_for(lambda: _count(conn, "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status = "
                                "'dialing' AND sent_at IS NOT NULL AND error_message LIKE 'ambiguous send%%'",
                                campaign_id) == 4, 30, what="every send answered 5xx and kept open")
    finally:
        sim.configure({"faults": {"api_5xx": 0.0}})
    assert _statuses(conn, campaign_id) == {"dialing": 4}, "an ambiguous send is not retried at once"
    # Its evidence window (ring timeout + margin) closes: brought forward here rather than waited for.
    conn.execute("UPDATE call_attempt SET sent_at = now() - interval '10 minutes' WHERE campaign_id = %s",
                 (campaign_id,))
    conn.commit()
    settled = ("SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND attempt_no = 1 "
               "AND status = 'unknown'")
    wait_for(lambda: _count(conn, settled, campaign_id) == 4, 30,
             what="no sign of the calls: treated as never placed")
    # Retried by the transient policy after a jittered backoff: brought forward.
    conn.execute("UPDATE destination SET next_attempt_at = now() WHERE campaign_id = %s "
                 "AND status = 'retry_wait'", (campaign_id,))
    conn.commit()
    wait_for(lambda: _statuses(conn, campaign_id) == {"done": 4}, 60, what="retried and done")
    per_destination = Counter(c["destination"] for c in _calls(sim, auth_id))
    assert len(per_destination) == 4 and max(per_destination.values()) == 1, "each placed exactly once"
    first = conn.execute("SELECT DISTINCT status FROM call_attempt WHERE campaign_id = %s AND attempt_no = 1",
                         (campaign_id,)).fetchall()
    assert first == [("unknown",)], "the unsettled send stays on record, open to a late callback"


def test_a_pause_stops_new_calls_within_one_second_of_returning(env, conn) -> None:
    sim, _ = env
    cps = 50
    auth_id = "MAPAUSE50"
    account_id = _account(conn, sim, auth_id, cps)
    campaign_id = load_campaign("pause-within-1s", numbers(300, start=400, area="646"))
    prepare_and_start(conn, campaign_id, account_id,
                      provider_options={"ring_timeout": 30, "time_limit": 60, "bulk": False})
    wait_for(lambda: len(_calls(sim, auth_id)) >= 60, 30, what="dialing at full rate")
    control.pause(conn, campaign_id)
    paused_at = time.time()
    in_flight = "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status = 'dialing'"
    wait_for(lambda: _count(conn, in_flight, campaign_id) == 0, 30, what="requests in flight answered")
    sim.wait_idle(30)
    after = [c for c in _calls(sim, auth_id) if c["received_at"] > paused_at]
    assert len(after) <= cps, f"{len(after)} calls reached the carrier after the pause returned (1 s = {cps})"
    assert _statuses(conn, campaign_id).get("pending", 0) > 0, "the pause left work undialed"
