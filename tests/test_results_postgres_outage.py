"""Postgres stops while hangups arrive: the callback API answers 503 (never 2xx for what it did not
store), the carrier retries with backoff, and after the restart every call's hangup is stored and applied.

This test stops the machine's Postgres cluster for a few seconds: other test sessions running at the same
time on this machine see that outage too.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
from tests.results_helpers import NO_RETRIES, wait_for
from tests.sim_helpers import start_simulator

pytestmark = pytest.mark.timeout(240)

AUTH_ID, TOKEN = "MAOUTAGE", "tok-outage"
CALLS = 40
OUTAGE_S = 3.0


def _cluster() -> list[str]:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _wait_ready(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode
            == 0
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("Postgres did not come back")


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture()
def sim_and_stack(database_url: str, redis_client: Any) -> Iterator[tuple[Any, Any]]:
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


def test_postgres_outage_gets_503_and_loses_no_hangup(sim_and_stack, database_url) -> None:
    sim, stack = sim_and_stack
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
        subprocess.run([*_cluster(), "stop", "-m", "fast"], check=True, capture_output=True)
        stopped_at = time.time()
        time.sleep(OUTAGE_S)
    finally:
        restarting_at = time.time()
        subprocess.run([*_cluster(), "start"], check=True, capture_output=True)
        _wait_ready()
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
