"""Outbound webhooks end to end (issue 22): real Postgres, Redis, Celery workers (the stack's dial workers and
a `webhooks` worker of their own), beat, the carrier simulator and a real HTTP receiver started here.

The promise: every event is delivered at least once, under a webhook-id that stays the same across its tries,
so a receiver that de-duplicates by that id sees each event exactly once, whatever outages it had; in order
per destination; signed so that standardwebhooks' Webhook.verify accepts it; and a receiver that is slow or
down never slows dialing. Backoff, timeout and pass length are shrunk through DIALER_WEBHOOK_* so each test
takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from campaigns import control
from campaigns.accounts import add_account
from campaigns.config import get_settings
from campaigns.store.dial_store import pause_account_campaigns
from campaigns.webhook_endpoints import set_notify_url
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from tests.webhook_receiver import Answer, Receiver
from workers.queues import WEBHOOKS_QUEUE

pytestmark = pytest.mark.timeout(180)

TIMEOUT_S = 1.0
WEBHOOK_ENV = {
    "DIALER_WEBHOOK_TIMEOUT_S": str(TIMEOUT_S),
    "DIALER_WEBHOOK_CONCURRENCY": "4",
    "DIALER_WEBHOOK_PASS_S": "5",
    "DIALER_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "DIALER_WEBHOOK_BACKOFF_MAX_S": "1",
    "DIALER_WEBHOOK_RETRY_FOR_S": "600",
}
SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": f"MAWEBHOOK{i}", "auth_token": f"tok-wh-{i}", "cps": 10,
     "max_concurrent": 100} for i in range(4)
]
QUICK_ANSWERED = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                  "talk_time": [2, 6], "ring_time": [1, 2]}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    saved = {name: os.environ.get(name) for name in WEBHOOK_ENV}
    os.environ.update(WEBHOOK_ENV)
    get_settings.cache_clear()
    config = {"accounts": SIM_ACCOUNTS, "outcomes": QUICK_ANSWERED,
              "callbacks": {"attempts": 5, "backoff": 1.0}}
    try:
        with start_simulator(config, speed=20.0, seed=5) as sim, running_stack(workers=2, threads=8) as stack:
            # The webhooks worker, as `dialer webhooks worker` starts it: the webhooks queue only.
            stack.others.append(stack._spawn("webhooks", [
                "-m", "celery", "-A", "workers.runtime.celery_app", "worker", "-Q", WEBHOOKS_QUEUE,
                "-P", "threads", "-c", "2", "-n", f"webhooks-{os.getpid()}@%h", "-l", "WARNING",
                "--without-mingle", "--without-gossip", "--without-heartbeat"]))
            yield sim, stack
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as connection:
        yield connection


def _account(conn: psycopg.Connection, sim: RunningSimulator, index: int) -> int:
    spec = SIM_ACCOUNTS[index]
    account_id = add_account(conn, name=f"webhooks-{index}", provider="plivo", auth_id=spec["auth_id"],
                             auth_token=spec["auth_token"], cps=spec["cps"], max_concurrent=100,
                             base_url=sim.base_url)
    conn.commit()
    return account_id


def _notify(conn: psycopg.Connection, url: str, **owner: int) -> str:
    secret = set_notify_url(conn, url=url, development=True, **owner)
    conn.commit()
    assert secret is not None and secret.startswith("whsec_")
    return secret


def _start(conn: psycopg.Connection, campaign_id: int, account_id: int, *, cps: float) -> None:
    """Ready to dial all day, then started as an operator starts it: run 1 begins."""
    prepare_and_start(conn, campaign_id, account_id, cps=cps, start=False)
    control.start(conn, campaign_id)


def _state(conn: psycopg.Connection, campaign_id: int) -> str:
    row = conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    conn.commit()
    return str(row[0]) if row else "missing"


def _outbox(conn: psycopg.Connection, campaign_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(
            "SELECT id, message_id, event_type, order_key, state, attempts, last_error, payload "
            "FROM webhook_delivery WHERE campaign_id = %s ORDER BY id", (campaign_id,)).fetchall()
    conn.commit()
    return rows


def _all_delivered(
    conn: psycopg.Connection, campaign_id: int, types: set[str]
) -> list[dict[str, Any]] | None:
    rows = _outbox(conn, campaign_id)
    if types <= {r["event_type"] for r in rows} and all(r["state"] == "delivered" for r in rows):
        return rows
    return None


def _expected_events(conn: psycopg.Connection, campaign_id: int) -> Counter[tuple[str, str]]:
    """What the campaign's state says must have been told: one attempt.finished per attempt, one
    destination.final per destination, run 1 started and finished, the campaign completed."""
    attempts = conn.execute("SELECT id FROM call_attempt WHERE campaign_id = %s", (campaign_id,)).fetchall()
    destinations = conn.execute("SELECT id FROM destination WHERE campaign_id = %s",
                                (campaign_id,)).fetchall()
    conn.commit()
    expected: Counter[tuple[str, str]] = Counter()
    expected.update(("attempt.finished", f"attempt {a[0]}") for a in attempts)
    expected.update(("destination.final", f"destination {d[0]}") for d in destinations)
    expected.update([("run.started", "run 1"), ("run.finished", "run 1"), ("campaign.completed", "")])
    return expected


def _subject(event: dict[str, Any]) -> tuple[str, str]:
    data, kind = event["data"], event["type"]
    if kind == "attempt.finished":
        return kind, f"attempt {data['attempt_id']}"
    if kind == "destination.final":
        return kind, f"destination {data['destination_id']}"
    if kind.startswith("run."):
        return kind, f"run {data['run_no']}"
    return kind, ""


def _assert_in_order_per_destination(receiver: Receiver, outbox: list[dict[str, Any]]) -> None:
    """An event of a destination (an order key) is never sent before the one before it was delivered: its
    first arrival comes after the arrival of its predecessor that was answered 2xx."""
    arrivals = receiver.snapshot()
    first_at = {}
    delivered_at = {}
    for r in arrivals:
        first_at.setdefault(r.id, r.at)
        if 200 <= r.answered < 300:
            delivered_at.setdefault(r.id, r.answered_at)
    by_key: dict[str, list[str]] = defaultdict(list)
    for row in outbox:
        by_key[row["order_key"]].append(row["message_id"])
    checked = 0
    for ids in by_key.values():
        for before, after in zip(ids, ids[1:], strict=False):
            assert first_at[after] >= delivered_at[before], (before, after)
            checked += 1
    assert checked > 0, "no destination had two events: nothing was checked"


def test_a_receiver_outage_loses_no_event_and_duplicates_none_but_by_its_webhook_id(env, conn) -> None:
    """The Done-when of issue 22's webhooks: the receiver is down while a small campaign runs on the
    simulator, then comes up. Every expected event arrives; each webhook-id at least once; de-duplicated by
    webhook-id there is exactly one of each event; the order per destination holds; every signature
    verifies."""
    sim, _ = env
    account_id = _account(conn, sim, 0)
    receiver = Receiver()  # not up yet: the port refuses connections
    secret = _notify(conn, receiver.url, account_id=account_id)
    campaign_id = load_campaign("webhooks outage", numbers(8, start=9100))
    _start(conn, campaign_id, account_id, cps=8)
    try:
        wait_for(lambda: any(r["event_type"] == "run.finished" for r in _outbox(conn, campaign_id)), 40,
                 what="the campaign completed and its run closed, every event in the outbox")
        wait_for(lambda: any(r["attempts"] >= 2 and r["last_error"] for r in _outbox(conn, campaign_id)), 10,
                 what="tries failing against the receiver that is down")
        assert receiver.snapshot() == []
        receiver.up()
        outbox = wait_for(lambda: _all_delivered(conn, campaign_id, {"campaign.completed", "run.finished"}),
                          30, what="every event delivered once the receiver is up")
    finally:
        receiver.down()

    events = receiver.verified(secret)  # standardwebhooks' Webhook.verify on every request
    requests = receiver.snapshot()
    unique: dict[str, dict[str, Any]] = {}
    for request, event in zip(requests, events, strict=True):
        assert unique.setdefault(request.id, event) == event, "one webhook-id carried two different events"
    assert set(unique) == {r["message_id"] for r in outbox}, "an event in the outbox never arrived"
    told = Counter(_subject(e) for e in unique.values())
    assert told == _expected_events(conn, campaign_id), "an event lost, or told twice under two ids"
    assert all(e["data"]["campaign_id"] == campaign_id for e in unique.values())
    _assert_in_order_per_destination(receiver, outbox)


def test_a_receiver_that_answers_500_then_recovers_gets_each_event_in_order(env, conn) -> None:
    """Three provider-error pauses of one campaign (one order key): the receiver answers 500 to the first
    four requests, then 2xx. Each event is retried with backoff until it is delivered, in order, and
    `dialer webhooks deliveries` lists them with their tries."""
    sim, _ = env
    account_id = _account(conn, sim, 1)
    failing_first = Receiver(lambda n: Answer(500) if n < 4 else Answer(200))
    with failing_first:
        secret = _notify(conn, failing_first.url, account_id=account_id)
        campaign_id = load_campaign("webhooks 500", numbers(2, start=9300))
        conn.execute("UPDATE campaign SET account_id = %s WHERE id = %s", (account_id, campaign_id))
        conn.commit()
        for n in range(3):  # running and paused again in one transaction: the dispatcher never sees it run
            with conn.transaction():
                conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
                pause_account_campaigns(conn, account_id, f"auth failed {n}")
        conn.commit()
        outbox = wait_for(lambda: _all_delivered(conn, campaign_id, {"campaign.paused"}) and
                          len(_outbox(conn, campaign_id)) == 3 and _outbox(conn, campaign_id), 20,
                          what="three pauses delivered after the 500s")
    events = failing_first.verified(secret)
    statuses = [r.answered for r in failing_first.snapshot()]
    assert statuses[:4] == [500] * 4 and statuses[-1] == 200
    reasons = [e["data"]["reason"] for e in events if e["type"] == "campaign.paused"]
    first_seen = list(dict.fromkeys(reasons))
    assert first_seen == ["auth failed 0", "auth failed 1", "auth failed 2"], "out of order"
    assert outbox[0]["attempts"] >= 2, "the first event was never retried"
    assert [r.id for r in failing_first.snapshot() if r.answered == 200] == [r["message_id"] for r in outbox]

    listing = _cli(["webhooks", "deliveries", "--campaign", str(campaign_id)])
    assert listing.count("campaign.paused") == 3 and "delivered" in listing and failing_first.url in listing


def test_a_receiver_that_times_out_gets_the_event_again_under_the_same_webhook_id(env, conn) -> None:
    """The receiver reads the first request but answers after the sender's timeout: the sender cannot know it
    arrived and sends it again, with the same webhook-id (the receiver's idempotency key); delivered once."""
    sim, _ = env
    account_id = _account(conn, sim, 2)
    slow_first = Receiver(lambda n: Answer(200, delay_s=TIMEOUT_S * 3) if n == 0 else Answer(200))
    with slow_first:
        secret = _notify(conn, slow_first.url, account_id=account_id)
        campaign_id = load_campaign("webhooks timeout", numbers(2, start=9400))
        conn.execute("UPDATE campaign SET account_id = %s WHERE id = %s", (account_id, campaign_id))
        with conn.transaction():
            conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
            pause_account_campaigns(conn, account_id, "balance too low")
        conn.commit()
        outbox = wait_for(lambda: _all_delivered(conn, campaign_id, {"campaign.paused"}), 20,
                          what="the event delivered after a timed-out try")
    received = slow_first.snapshot()
    assert [r.id for r in received] == [outbox[0]["message_id"]] * 2
    assert received[0].headers["webhook-timestamp"] <= received[1].headers["webhook-timestamp"]
    assert len(slow_first.verified(secret)) == 2
    assert outbox[0]["attempts"] == 2 and outbox[0]["state"] == "delivered"


def test_a_slow_receiver_never_slows_dialing(env, conn) -> None:
    """Each answer takes 0.6 s (under the timeout) and a pass has at most two POSTs in flight to one endpoint:
    the events trail behind, and the campaign still dials at its CPS and completes before they are all
    delivered."""
    sim, _ = env
    account_id = _account(conn, sim, 3)
    slow = Receiver(lambda n: Answer(204, delay_s=0.6))
    with slow:
        secret = _notify(conn, slow.url, account_id=account_id)
        campaign_id = load_campaign("webhooks slow", numbers(10, start=9500))
        started = time.monotonic()
        _start(conn, campaign_id, account_id, cps=10)
        wait_for(lambda: _state(conn, campaign_id) == "completed", 30, what="the campaign completed")
        completed_after = time.monotonic() - started
        told_by_then = len({r.id for r in slow.snapshot()})
        total = len(_outbox(conn, campaign_id))
        wait_for(lambda: _all_delivered(conn, campaign_id, {"campaign.completed"}), 60,
                 what="every event delivered in the end")
    delivered_after = time.monotonic() - started
    assert len(slow.verified(secret)) >= total
    assert completed_after < 15, f"dialing 10 numbers at 10 CPS took {completed_after:.1f} s"
    assert told_by_then < total, "the receiver kept up: the test proves nothing"
    assert delivered_after > completed_after


def _cli(args: list[str]) -> str:
    """`dialer ARGS` as a user runs it, its output wide enough for the table."""
    dialer = str(Path(sys.executable).parent / "dialer")
    done = subprocess.run([dialer, *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
