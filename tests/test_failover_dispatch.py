"""The dispatcher's side of failover, in process against real Postgres and Redis, each test with nothing
else due: an open account is routed around; its cool-down's end is the dispatcher's to act on (half-open,
a few probes, the rest to the backup); an open circuit lives in Postgres and survives Redis losing every key;
the breaker's window in Redis counts failed dials and judges the last seconds."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from campaigns import circuits
from campaigns.accounts import add_account
from campaigns.campaign_accounts import Fallback, replace_fallbacks
from campaigns.circuit_rules import Cause, CircuitPolicy
from campaigns.states import CircuitState
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from workers.dispatch.dispatcher import dispatch_tick
from workers.ratelimit.health import HealthWindow
from workers.ratelimit.process_budgets import get_budgets

POLICY = CircuitPolicy()


@pytest.fixture()
def conn(database_url: str, redis_client: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        # A tick dispatches every running campaign of the database: only this test's may run during it.
        connection.execute("UPDATE campaign SET state = 'paused', state_reason = 'paused for this test' "
                           "WHERE state = 'running'")
        yield connection
        connection.execute("UPDATE campaign SET state = 'paused' WHERE state = 'running'")


def _account(conn: psycopg.Connection, provider: str = "tryvox") -> int:
    return add_account(conn, name=f"route-{uuid.uuid4().hex[:8]}", provider=provider, auth_id="acct",
                       auth_token="tvx_sk_test_x", cps=10, max_concurrent=50, base_url="http://127.0.0.1:9")


def _campaign(conn: psycopg.Connection, primary: int, fallbacks: list[int], count: int = 10) -> int:
    campaign_id = load_campaign(f"route-{uuid.uuid4().hex[:6]}", numbers(count, start=600, area="718"))
    prepare_and_start(conn, campaign_id, primary, start=False)
    replace_fallbacks(conn, campaign_id, [Fallback(a) for a in fallbacks])
    conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    return campaign_id


def _tick(conn: psycopg.Connection) -> list[tuple[int, list[int], int]]:
    enqueued: list[tuple[int, list[int], int]] = []
    dispatch_tick(conn, get_budgets(), lambda cid, ids, account: enqueued.append((cid, ids, account)))
    return enqueued


def _release(conn: psycopg.Connection, campaign_id: int) -> None:
    """Hand the claimed destinations back, as chunks that found nothing to do would."""
    conn.execute("UPDATE destination SET status = 'pending', next_attempt_at = NULL WHERE campaign_id = %s "
                 "AND status = 'queued'", (campaign_id,))


def _backdate(conn: psycopg.Connection, account_id: int) -> None:
    conn.execute("UPDATE account_circuit SET retry_at = now() - interval '1 second' WHERE account_id = %s",
                 (account_id,))


def test_an_open_primary_is_routed_around_and_its_cool_down_ends_in_probes(conn: psycopg.Connection) -> None:
    primary, backup = _account(conn), _account(conn)
    campaign_id = _campaign(conn, primary, [backup])
    circuits.open_circuit(conn, primary, Cause.FAILURE_RATE, "down", POLICY)
    enqueued = _tick(conn)
    assert {account for _, _, account in enqueued} == {backup}
    assert sum(len(ids) for _, ids, _ in enqueued) == 10
    claimed_for = conn.execute("SELECT DISTINCT claim_account_id FROM destination WHERE campaign_id = %s",
                               (campaign_id,)).fetchall()
    assert claimed_for == [(backup,)], "each claim names the account it is for"
    _release(conn, campaign_id)
    _backdate(conn, primary)  # the cool-down is over: the dispatcher, its owner, moves it on
    enqueued = _tick(conn)
    assert circuits.circuit_of(conn, primary).state == CircuitState.HALF_OPEN
    probes = [ids for _, ids, account in enqueued if account == primary]
    assert [len(ids) for ids in probes] == [1] * POLICY.probes, "the probes, one destination a request"
    assert sum(len(ids) for _, ids, account in enqueued if account == backup) == 10 - POLICY.probes
    _release(conn, campaign_id)
    enqueued = _tick(conn)
    assert all(account == backup for _, _, account in enqueued), "no more probes than the policy's"


def test_a_campaign_whose_only_account_is_open_waits_running_and_is_probed_at_the_cool_down(
    conn: psycopg.Connection,
) -> None:
    only = _account(conn)
    campaign_id = _campaign(conn, only, [])
    circuits.open_circuit(conn, only, Cause.FAILURE_RATE, "down", POLICY)
    assert _tick(conn) == []
    assert conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone() == ("running",)
    _backdate(conn, only)
    enqueued = _tick(conn)
    assert sum(len(ids) for _, ids, _ in enqueued) == POLICY.probes


def test_an_open_circuit_survives_redis_losing_every_key(conn: psycopg.Connection, redis_client: Any) -> None:
    primary, backup = _account(conn), _account(conn)
    _campaign(conn, primary, [backup])
    circuits.open_circuit(conn, primary, Cause.AUTH, "401", POLICY)
    prefix = os.environ["DIALER_REDIS_PREFIX"]
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):  # this deployment's FLUSHALL
        redis_client.delete(key)
    enqueued = _tick(conn)
    assert enqueued and {account for _, _, account in enqueued} == {backup}
    assert circuits.circuit_of(conn, primary).state == CircuitState.OPEN


def test_the_window_counts_failed_dials_and_judges_the_last_seconds(redis_client: redis.Redis) -> None:
    window = HealthWindow(redis_client)
    account = 10**9 + int(uuid.uuid4().int % 10**6)
    window.forget(account)
    window.add_success(account, 10.0, 40)  # written at once: the first of the second
    counts = window.add_failure(account, 10.0, 5)
    assert (counts.failures, counts.successes) == (5, 40)
    assert (counts.recent_failures, counts.recent_successes) == (5, 40)
    window.add_success(account, 10.0, 7)  # within the second: kept in the process
    counts = window.add_failure(account, 10.0)
    assert (counts.failures, counts.successes) == (6, 47), "a failure writes the process's successes"
    window.forget(account)
    counts = window.add_failure(account, 10.0)
    assert (counts.failures, counts.successes) == (1, 0), "forgotten: a fresh window"


def test_a_tick_publishes_its_accounts_chunks_in_the_order_their_first_sends_fall_due() -> None:
    from workers.dispatch.dispatcher import InterleavedChunks

    chunks = InterleavedChunks()
    for i in range(3):
        chunks.add(1, [10 + i] * 3, 7)  # the first account's pass: its whole horizon first
    for i in range(3):
        chunks.add(1, [20 + i] * 3, 8)
    chunks.add(2, [30] * 2, 9)  # a slow account: its first chunk is due at once all the same
    published: list[tuple[int, int]] = []
    chunks.publish(lambda _cid, ids, account: published.append((account, ids[0])), {7: 50.0, 8: 50.0, 9: 5.0})
    assert published == [(7, 10), (8, 20), (9, 30), (7, 11), (8, 21), (7, 12), (8, 22)]
