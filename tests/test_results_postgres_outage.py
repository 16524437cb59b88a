"""Postgres stops while hangups arrive: the callback API answers 503 (never 2xx for what it did not
store), the carrier retries with backoff, and after the restart every call's hangup is stored and applied.

Postgres here is a private cluster (tests/private_services.py) that the whole stack is pointed at: the
machine's shared Postgres, which other test sessions use, never stops.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
from tests.private_services import PrivatePostgres, pointed_at, private_postgres
from tests.results_helpers import NO_RETRIES, wait_for
from tests.sim_helpers import start_simulator

pytestmark = pytest.mark.timeout(240)

AUTH_ID, TOKEN = "MAOUTAGE", "tok-outage"
CALLS = 40
OUTAGE_S = 3.0


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture()
def cluster() -> Iterator[PrivatePostgres]:
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture()
def private_url(cluster: PrivatePostgres, database_url: str) -> Iterator[str]:
    """The dialer's database on the private cluster; this process and the stack pointed at it."""
    from campaigns.config import get_settings
    from campaigns.db import init_database

    with pointed_at(database_url=cluster.database_url("dialer_outage")):
        url = get_settings().psycopg_url
        init_database(url)
        yield url


@pytest.fixture()
def sim_and_stack(private_url: str, redis_client: Any) -> Iterator[tuple[Any, Any]]:
    config = {
        "accounts": [
            {"provider": "plivo", "auth_id": AUTH_ID, "auth_token": TOKEN, "cps": 40, "max_concurrent": 500}
        ],
        "outcomes": {
            "answered": 100,
            "busy": 0,
            "no_answer": 0,
            "failed": 0,
            "machine": 0,
            "talk_time": [60, 100],
            "ring_time": [1, 3],
        },
        # Backoff is divided by the speed: 20 carrier seconds = 1 s here, then x1.5 per attempt.
        "callbacks": {"attempts": 12, "backoff": 20.0, "backoff_factor": 1.5, "timeout": 5.0},
    }
    with start_simulator(config, speed=20.0, seed=9) as sim, running_stack(workers=1, threads=8) as stack:
        yield sim, stack


def test_postgres_outage_gets_503_and_loses_no_hangup(sim_and_stack, cluster, private_url) -> None:
    sim, stack = sim_and_stack
    database_url = private_url
    with _connect(database_url) as conn:
        account_id = add_account(
            conn,
            name=f"outage-{uuid.uuid4().hex[:6]}",
            provider="plivo",
            auth_id=AUTH_ID,
            auth_token=TOKEN,
            cps=40,
            max_concurrent=500,
            base_url=sim.base_url,
        )
        campaign_id = load_campaign("outage", numbers(CALLS, start=900, area="917"))
        prepare_and_start(
            conn,
            campaign_id,
            account_id,
            provider_options={"ring_timeout": 30, "time_limit": 200},
            retry_policy=NO_RETRIES,
        )
        # Every call placed and recorded; their hangups (3-5 s of talk at this speed) are still to come.
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status <> 'dialing'",
                    (campaign_id,),
                ).fetchone()[0]
                >= CALLS
            ),
            30,
            "all calls sent",
        )
    assert not [c for c in sim.ledger()["calls"] if c["status"] == "completed"], (
        "hangups came before the outage"
    )
    try:
        cluster.stop()
        stopped_at = time.time()
        time.sleep(OUTAGE_S)
    finally:
        restarting_at = time.time()
        cluster.start()
    sim.wait_idle(90)
    during = [cb for cb in sim.ledger()["callbacks"] if stopped_at <= cb["time"] <= restarting_at]
    assert any(cb["status"] == 503 for cb in during), "the API never answered 503 while Postgres was down"
    assert not any(cb["status"] in (200, 204) for cb in during if cb["kind"] == "hangup"), (
        "a hangup was acknowledged while nothing could store it"
    )
    assert sim.stats()["callbacks"]["failed"] == 0, "a callback ran out of retries"
    with _connect(database_url) as conn:
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status = 'completed'",
                    (campaign_id,),
                ).fetchone()[0]
                == CALLS
            ),
            30,
            "every hangup applied after the restart",
        )
        ours = {
            row[0]: row[1:]
            for row in conn.execute(
                """SELECT d.number, a.outcome, a.call_uuid FROM call_attempt a
               JOIN destination d ON d.id = a.destination_id WHERE a.campaign_id = %s""",
                (campaign_id,),
            )
        }
        hangups = conn.execute(
            "SELECT count(*), count(applied_at) FROM call_event WHERE account_id = %s AND kind = 'hangup'",
            (account_id,),
        ).fetchone()
    assert hangups == (CALLS, CALLS)
    for call in sim.ledger()["calls"]:
        outcome, call_uuid = ours["+" + call["destination"]]
        assert (outcome, call_uuid) == (call["outcome"], call["call_uuid"])
