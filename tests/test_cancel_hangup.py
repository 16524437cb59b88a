"""Cancel: new calls stop at once; with hang-up, live calls end through each provider's hang-up API, their
final callbacks are still recorded, and no destination of a cancelled campaign returns to retry_wait. Real
Celery workers, the API, Postgres, Redis and the simulator (which plays each hang-up endpoint)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import AccountCredentials, add_account
from campaigns.api_keys import create_api_key
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

APP_ID = "0c9a1f3e-6d0b-4c55-9d8a-3b2f5c0de111"
SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAHANGUP", "auth_token": "tok-hang", "cps": 50, "max_concurrent": 100},
    {"provider": "plivo", "auth_id": "MASLOW", "auth_token": "tok-slow", "cps": 50, "max_concurrent": 100},
    {"provider": "bandwidth", "auth_id": "5550777", "auth_token": "bw-hang", "cps": 50, "max_concurrent": 100,
     "application_id": APP_ID, "api_username": "bw-hang-user"},
    {"provider": "voipbin", "auth_id": "vb-hang", "auth_token": "vb-hang-token", "cps": 50,
     "max_concurrent": 100},
    {"provider": "vobiz", "auth_id": "MZHANGUP", "auth_token": "vz-hang", "cps": 50, "max_concurrent": 100},
]
LONG_CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
              "talk_time": [600, 700], "ring_time": [1, 2]}  # 30 s of talk at speed 20: ended by the test
# Without the cancelled-campaign rule, an answered or cancelled call would be tried again.
RETRY_EVERYTHING = {"answered": {"delay_s": 0, "max_attempts": 3},
                    "cancelled": {"delay_s": 0, "max_attempts": 3}}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": SIM_ACCOUNTS, "outcomes": LONG_CALLS}
    with start_simulator(config, speed=20.0, seed=9) as sim, running_stack(workers=1, threads=8) as stack:
        yield sim, stack


@pytest.fixture(scope="module")
def auth(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {"Authorization": f"Bearer {create_api_key(conn, name='hangup-tests', role='admin').key}"}


def _calls(sim: RunningSimulator, auth_id: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["account"] == auth_id]


def _statuses(db: psycopg.Connection, campaign_id: int) -> dict[str, int]:
    return dict(db.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                           (campaign_id,)).fetchall())


@pytest.mark.parametrize(("provider", "auth_id", "token", "options"), [
    ("plivo", "MAHANGUP", "tok-hang", None),
    ("bandwidth", "5550777", "bw-hang", {"application_id": APP_ID, "api_username": "bw-hang-user"}),
])
def test_cancel_with_hangup_ends_live_calls_and_records_their_final_callbacks(
    env: tuple[RunningSimulator, Stack], db: psycopg.Connection, auth: dict[str, str],
    provider: str, auth_id: str, token: str, options: dict[str, Any] | None,
) -> None:
    sim, stack = env
    account_id = add_account(db, name=f"hangup-{provider}", provider=provider, auth_id=auth_id,
                             auth_token=token, cps=50, max_concurrent=100, base_url=sim.base_url,
                             options=options)
    phones = numbers(4, start=8100 if provider == "plivo" else 8200)
    campaign_id = load_campaign(f"hangup-{provider}", phones)
    prepare_and_start(db, campaign_id, account_id, retry_policy=RETRY_EVERYTHING,
                      provider_options={"ring_timeout": 30, "time_limit": 3600})
    wait_for(lambda: _statuses(db, campaign_id).get("answered") == len(phones), timeout=30,
             what="every call answered and talking")

    answer = httpx.post(f"{stack.api_url}/campaigns/{campaign_id}/cancel", params={"hangup": "true"},
                        headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "cancelled"
    assert answer.json()["hangup"]["requested"] == len(phones) and not answer.json()["hangup"]["errors"]

    # Final callbacks arrive and are applied: answered, short, and the destinations end cancelled (their
    # policy would have retried them), never retry_wait.
    wait_for(lambda: _statuses(db, campaign_id) == {"cancelled": len(phones)}, timeout=20,
             what="every destination final")
    attempts = db.execute("SELECT status, outcome, duration FROM call_attempt WHERE campaign_id = %s",
                          (campaign_id,)).fetchall()
    assert len(attempts) == len(phones)
    # The seed's minimal Plivo hangup carries no Duration: the carrier's ledger says how long they talked.
    assert all(status == "completed" and outcome == "answered" for status, outcome, _ in attempts), attempts
    calls = _calls(sim, auth_id)
    assert len(calls) == len(phones)
    assert all(c["hung_up_by_api"] and c["status"] == "completed" and c["duration"] < 600 for c in calls)
    assert db.execute("SELECT count(*) FROM call_event e JOIN call_attempt a ON a.id = e.attempt_id "
                      "WHERE a.campaign_id = %s AND e.kind = 'hangup' AND e.applied_at IS NOT NULL",
                      (campaign_id,)).fetchone() == (len(phones),)


def test_cancel_stops_new_calls_within_a_second(env: tuple[RunningSimulator, Stack], db: psycopg.Connection,
                                                auth: dict[str, str]) -> None:
    sim, stack = env
    account_id = add_account(db, name="hangup-slow", provider="plivo", auth_id="MASLOW",
                             auth_token="tok-slow", cps=50, max_concurrent=100, base_url=sim.base_url)
    phones = numbers(40, start=8300)
    campaign_id = load_campaign("cancel-slow", phones)
    prepare_and_start(db, campaign_id, account_id, cps=2.0,
                      provider_options={"ring_timeout": 30, "time_limit": 3600, "bulk": False})
    wait_for(lambda: len(_calls(sim, "MASLOW")) >= 3, timeout=30, what="the first calls placed")
    answer = httpx.post(f"{stack.api_url}/campaigns/{campaign_id}/cancel", headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text + stack.logs()
    time.sleep(1.0)
    placed = len(_calls(sim, "MASLOW"))
    time.sleep(2.5)  # at 2 CPS, five more calls would have been placed by now
    assert len(_calls(sim, "MASLOW")) == placed < len(phones)
    # Every attempt is a call the carrier received: nothing is left half-dialed or pending.
    assert db.execute("SELECT count(*) FROM call_attempt WHERE campaign_id = %s", (campaign_id,)).fetchone() \
        == (placed,)
    statuses = _statuses(db, campaign_id)
    assert set(statuses) <= {"cancelled", "dialing", "ringing", "answered"}
    assert statuses["cancelled"] == len(phones) - placed
    db.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))


@pytest.mark.parametrize(("provider", "auth_id", "token"), [
    ("voipbin", "vb-hang", "vb-hang-token"),
    ("vobiz", "MZHANGUP", "vz-hang"),
])
def test_voipbin_and_vobiz_hang_up_a_live_call_at_their_endpoints(
    env: tuple[RunningSimulator, Stack], provider: str, auth_id: str, token: str
) -> None:
    sim, _ = env
    adapter = adapter_for(provider)
    creds = AccountCredentials(account_id=999, provider=provider, auth_id=auth_id, auth_token=token,
                               base_url=sim.base_url)
    urls = CallbackUrls(answer_url="http://127.0.0.1:9/answer", hangup_url="http://127.0.0.1:9/hangup")
    call = OutboundCall(caller_id="+14155550100", destinations=["+12125558401"], callbacks=urls,
                        ring_timeout=30, time_limit=3600)
    with make_client() as client:
        placed = adapter.create_calls(client, creds, call).calls[0]
        wait_for(lambda: _calls(sim, auth_id) and _calls(sim, auth_id)[-1]["status"] == "answered",
                 timeout=10, what="the call answered")
        assert adapter.hang_up(client, creds, placed.request_uuid, placed.call_uuid)
        wait_for(lambda: _calls(sim, auth_id)[-1]["status"] == "completed", timeout=10, what="the call ended")
        assert _calls(sim, auth_id)[-1]["hung_up_by_api"]
        # Asked again, the carrier no longer knows it as live: not an error.
        assert adapter.hang_up(client, creds, placed.request_uuid, placed.call_uuid) in (True, False)


def test_tryvox_has_no_hangup_api_and_says_so() -> None:
    adapter = adapter_for("tryvox")
    creds = AccountCredentials(account_id=1, provider="tryvox", auth_id="x", auth_token="y",
                               base_url="http://127.0.0.1:9")
    assert not adapter.traits.api.has_hangup
    with make_client() as client:
        assert adapter.hang_up(client, creds, "req", "call") is False  # nothing is sent
