"""No token, key or secret ever leaves in the clear: after a campaign through the simulator (including a
carrier that refuses the credentials) and a round of API calls, every log line, API body, export, stored
row and Redis value (the broker's task messages, which Flower shows, included) is searched for each of them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis

from campaigns.accounts import add_account, load_account
from campaigns.api_keys import create_api_key
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.providers.signatures import bandwidth_callback_credentials, callback_url_secret

pytestmark = pytest.mark.timeout(300)

APP_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0099"
ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "voipbin", "auth_id": "vb-leak", "auth_token": "vbtok-LEAKCHECK-1", "cps": 20,
     "max_concurrent": 100},
    {"provider": "plivo", "auth_id": "MALEAK", "auth_token": "plivotok-LEAKCHECK-2", "cps": 20,
     "max_concurrent": 100},
    {"provider": "bandwidth", "auth_id": "5559999", "auth_token": "bwtok-LEAKCHECK-3", "cps": 20,
     "max_concurrent": 100, "application_id": APP_ID, "api_username": "bw-leak-user"},
]
WRONG_TOKEN = "wrongtok-LEAKCHECK-4"  # a Plivo account the carrier refuses: its errors must not echo it
WEBHOOK_SECRET = "vb-webhook-LEAKCHECK-5"
CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0, "talk_time": [1, 3],
         "ring_time": [1, 2]}


@pytest.fixture(scope="module")
def ran(database_url: str,
        redis_client: redis.Redis) -> Iterator[tuple[RunningSimulator, Stack, dict[str, int]]]:
    # The stack first: VoIPbin's webhook URL (configured per customer at the carrier) names the account and
    # the API, so the simulator is configured after the accounts exist and the API is up.
    with running_stack(workers=1, threads=4) as stack:
        with psycopg.connect(database_url) as conn:
            ids: dict[str, int] = {}
            for spec in ACCOUNTS:
                options = ({"application_id": APP_ID, "api_username": "bw-leak-user"}
                           if spec["provider"] == "bandwidth" else None)
                ids[spec["provider"]] = add_account(
                    conn, name=f"leak-{spec['provider']}-{uuid.uuid4().hex[:6]}", provider=spec["provider"],
                    auth_id=spec["auth_id"], auth_token=spec["auth_token"], cps=10, max_concurrent=50,
                    base_url="http://127.0.0.1:9", options=options,
                    webhook_secret=WEBHOOK_SECRET if spec["provider"] == "voipbin" else None)
            ids["refused"] = add_account(conn, name=f"leak-refused-{uuid.uuid4().hex[:6]}", provider="plivo",
                                         auth_id="MALEAK", auth_token=WRONG_TOKEN, cps=10, max_concurrent=50,
                                         base_url="http://127.0.0.1:9")
            conn.commit()
        vb = ids["voipbin"]
        webhook = f"{stack.api_url}/callbacks/voipbin/{vb}/status?s={callback_url_secret(vb)}"
        accounts = [{**spec, "webhook_uri": webhook, "webhook_secret": WEBHOOK_SECRET}
                    if spec["provider"] == "voipbin" else spec for spec in ACCOUNTS]
        config = {"accounts": accounts, "outcomes": CALLS, "callbacks": {"attempts": 3, "backoff": 0.5}}
        with start_simulator(config, speed=20.0, seed=5) as sim, psycopg.connect(database_url) as conn:
            conn.execute("UPDATE provider_account SET base_url = %s WHERE id = ANY(%s)",
                         (sim.base_url, list(ids.values())))
            conn.commit()
            campaigns = []
            for n, (name, account_id) in enumerate(ids.items()):
                phones = numbers(4, start=700 + 10 * n)
                campaign = load_campaign(f"leak-{name}-{uuid.uuid4().hex[:6]}", phones)
                prepare_and_start(conn, campaign, account_id)
                campaigns.append(campaign)

            def settled() -> bool:
                states = conn.execute("SELECT state FROM campaign WHERE id = ANY(%s)",
                                      (campaigns,)).fetchall()
                return all(s[0] in ("completed", "paused") for s in states)

            wait_for(settled, 180, what="leak-check campaigns completed or paused")
        yield sim, stack, ids


def _secrets(database_url: str, ids: dict[str, int], api_key: str) -> dict[str, str]:
    found = {f"token of {spec['provider']}": spec["auth_token"] for spec in ACCOUNTS}
    found.update({"refused token": WRONG_TOKEN, "webhook secret": WEBHOOK_SECRET, "API key": api_key,
                  "DIALER_SECRET_KEY": os.environ["DIALER_SECRET_KEY"],
                  "Bandwidth callback password": bandwidth_callback_credentials(ids["bandwidth"])[1]})
    with psycopg.connect(database_url) as conn:
        creds, _ = load_account(conn, ids["plivo"])
    found["repr of credentials"] = repr(creds)  # the repr itself must not hold the token
    assert creds.auth_token not in found["repr of credentials"]
    del found["repr of credentials"]
    return found


def _redis_text(client: redis.Redis) -> str:
    prefix = os.environ["DIALER_REDIS_PREFIX"]
    parts = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            parts.append(repr(client.get(key)))
        elif kind == b"hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == b"list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == b"zset":
            parts.append(repr(client.zrange(key, 0, -1)))
        elif kind == b"set":
            parts.append(repr(client.smembers(key)))
    return "\n".join(parts)


def _database_text(conn: psycopg.Connection) -> str:
    tables = ("campaign", "destination", "call_attempt", "call_event", "rejected_callback", "rejected_row",
              "provider_account", "api_key")
    return "\n".join(repr(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)


def test_no_token_key_or_secret_appears_anywhere(ran, database_url: str, redis_client: redis.Redis) -> None:
    _, stack, ids = ran
    with psycopg.connect(database_url) as conn:
        api_key = create_api_key(conn, name=f"leak-{uuid.uuid4().hex[:6]}", role="admin").key
        database = _database_text(conn)
        campaign_ids = [r[0] for r in conn.execute("SELECT id FROM campaign WHERE name LIKE 'leak-%'")]
        state = conn.execute("SELECT state, state_reason FROM campaign WHERE account_id = %s",
                             (ids["refused"],)).fetchone()
    assert state is not None and state[0] == "paused", state  # the carrier refused: reason recorded
    with psycopg.connect(database_url) as conn:  # every working provider's calls and callbacks went through
        for provider in ("voipbin", "plivo", "bandwidth"):
            row = conn.execute("SELECT count(*) FROM call_event WHERE account_id = %s",
                               (ids[provider],)).fetchone()
            assert row is not None and row[0] > 0, provider
    headers = {"Authorization": f"Bearer {api_key}"}
    bodies = []
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as api:
        bodies.append(api.get("/campaigns").text)
        for campaign_id in campaign_ids:
            for path in (f"/campaigns/{campaign_id}", f"/campaigns/{campaign_id}/results",
                         f"/campaigns/{campaign_id}/rejects"):
                bodies.append(api.get(path).text)
        bodies.append(api.patch(f"/campaigns/{campaign_ids[0]}", json={"cps": "nan"}).text)  # an error body
        bodies.append(httpx.get(f"{stack.api_url}/campaigns", headers={"Authorization": "Bearer nope"}).text)
    everything = {
        "logs": "\n".join(p.read_text(errors="replace") for p in stack.workdir.glob("*.log")),
        "API bodies": "\n".join(bodies),
        "database": database,
        "Redis (broker messages, task arguments, counters)": _redis_text(redis_client),
    }
    leaks = [f"{what} in {where}" for what, value in _secrets(database_url, ids, api_key).items()
             for where, text in everything.items() if value in text]
    assert not leaks, leaks


def test_the_repr_of_credentials_and_callback_urls_hides_every_secret() -> None:
    from workers.providers.calls import AccountCredentials, CallbackUrls

    creds = AccountCredentials(account_id=1, provider="voipbin", auth_id="a", auth_token="tok-SECRET-1",
                               base_url="https://x", webhook_secret="hook-SECRET-2")
    urls = CallbackUrls(answer_url="https://a", hangup_url="https://h", username="dialer",
                        password="pw-SECRET-3")
    text = repr(creds) + str(creds) + repr(urls)
    assert "SECRET" not in text
