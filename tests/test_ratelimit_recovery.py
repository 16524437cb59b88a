"""Budgets survive Redis losing its state: nothing is booked on an empty Redis, live calls come back from
the open attempts, the 429 pause and lowered rate are kept, and recently active accounts stay quiet for
longer than any booking made before the loss can still be sent. Real Redis (this session's keys only)
and real Postgres."""

from __future__ import annotations

import itertools
import time
import uuid

import psycopg
import pytest
import redis

from campaigns.secrets_box import encrypt
from campaigns.states import slot_member
from workers import redis_keys
from workers.dialing import send_booking
from workers.ratelimit import Budgets
from workers.ratelimit.postgres_state import PostgresBudgetState
from workers.ratelimit.recovery import QUIET_S, BudgetSnapshot, OpenSlot

_accounts = itertools.count(9_100_000)


class SnapshotOnly:
    """A BudgetStateStore holding a fixed snapshot and recording what it is asked to persist."""

    def __init__(self, snap: BudgetSnapshot) -> None:
        self.snap = snap
        self.rates: dict[int, float | None] = {}
        self.pauses: dict[int, float] = {}

    def snapshot(self) -> BudgetSnapshot:
        return self.snap

    def save_rate(self, account_id: int, rate: float | None) -> None:
        self.rates[account_id] = rate

    def save_pause(self, account_id: int, until: float) -> None:
        self.pauses[account_id] = until


def lose_state(client: redis.Redis, *account_ids: int) -> None:
    """What FLUSHALL does to this session's budgets, without touching anyone else's keys."""
    keys = [redis_keys.budgets_epoch()]
    for a in account_ids:
        keys += [redis_keys.account_cps(a), redis_keys.account_cps_sends(a), redis_keys.account_cps_reach(a),
                 redis_keys.account_rate(a),
                 redis_keys.account_pause(a), redis_keys.account_slots(a)]
    client.delete(*keys)


def test_the_quiet_period_outlasts_any_booking_made_before_the_loss() -> None:
    b = send_booking
    latest_send = b.MAX_RESERVATION_WAIT_S + b.MAX_LATENESS_S
    assert QUIET_S >= latest_send + b.MAX_WINDOW_S


def test_an_empty_redis_books_nothing_until_rebuilt_then_holds_a_quiet_period(redis_client) -> None:
    account = next(_accounts)
    budgets = Budgets(redis_client, state=SnapshotOnly(BudgetSnapshot(active_accounts={account})))
    lose_state(redis_client, account)
    grant = budgets.reserve(account, None, 1, 10.0, None, 2.0)
    assert not grant.granted, "an empty Redis booked a send as if nothing had been sent in the last second"
    assert grant.retry_after_s >= QUIET_S - 2.0 - 0.1
    assert redis_client.exists(redis_keys.budgets_epoch())
    pause_ms = redis_client.pttl(redis_keys.account_pause(account))
    assert pause_ms >= (QUIET_S - 0.2) * 1000


def test_a_fresh_redis_with_no_recent_activity_books_at_once(redis_client) -> None:
    account = next(_accounts)
    budgets = Budgets(redis_client, state=SnapshotOnly(BudgetSnapshot()))
    lose_state(redis_client, account)
    assert budgets.reserve(account, None, 1, 10.0, None, 2.0).granted


def test_live_calls_are_rebuilt_into_the_slots_before_any_is_taken(redis_client) -> None:
    account, campaign = next(_accounts), next(_accounts)
    lease = time.time() + 60
    slots = [OpenSlot(account, campaign, f"{i}:1", lease) for i in range(3)]
    budgets = Budgets(redis_client, state=SnapshotOnly(BudgetSnapshot(slots=slots)))
    lose_state(redis_client, account)
    redis_client.delete(redis_keys.campaign_slots(campaign))
    assert not budgets.acquire(account, campaign, ["new:1"], 3, None, 30.0), "the account is full"
    assert not budgets.acquire(account + 1, campaign, ["new:1"], 10, 3, 30.0), "so is the campaign"
    assert budgets.acquire(account, campaign, ["0:1"], 3, None, 30.0), "a live call keeps its own slot"
    assert budgets.live_count(account) == 3


def test_a_429_pause_and_a_lowered_rate_outlive_the_loss(redis_client) -> None:
    account = next(_accounts)
    store = SnapshotOnly(BudgetSnapshot())
    budgets = Budgets(redis_client, state=store)
    budgets.restore()
    lowered = budgets.decrease(account, 20.0)
    until = budgets.pause_account(account, 30.0)
    assert store.rates[account] == lowered < 20.0 and store.pauses[account] == until
    store.snap = BudgetSnapshot(rates=dict(store.rates), pauses=dict(store.pauses))  # type: ignore[arg-type]
    lose_state(redis_client, account)
    grant = budgets.reserve(account, None, 1, 20.0, None, 2.0)
    assert not grant.granted and grant.retry_after_s > 25
    assert budgets.current_rate(account, 20.0) == pytest.approx(lowered)


def _account_with_open_attempt(conn: psycopg.Connection) -> tuple[int, int, int]:
    account = conn.execute(
        "INSERT INTO provider_account (name, provider, auth_id, auth_token_encrypted, base_url, cps, "
        "max_concurrent) VALUES (%s, 'plivo', 'MA', %s, 'http://127.0.0.1:9', 5, 5) RETURNING id",
        (f"recovery-{uuid.uuid4().hex[:8]}", encrypt("token")),
    ).fetchone()[0]
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, state, max_concurrent) VALUES ('r', %s, 'running', 2) "
        "RETURNING id",
        (account,),
    ).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, '+12125550199', 'UTC', 'ringing', 2) RETURNING id",
        (campaign,),
    ).fetchone()[0]
    attempt = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, sent_at, "
        "lease_expires_at) VALUES (%s, %s, %s, 2, 'ringing', now(), now() + interval '1 hour') RETURNING id",
        (destination, campaign, account),
    ).fetchone()[0]
    return account, campaign, attempt


def test_postgres_keeps_what_a_rebuild_needs(db: psycopg.Connection) -> None:
    account, campaign, attempt = _account_with_open_attempt(db)

    def connect() -> psycopg.Connection:
        return psycopg.connect(db.info.dsn, autocommit=True)

    state = PostgresBudgetState(connect)
    state.save_rate(account, 7.5)
    state.save_pause(account, time.time() + 40)
    state.save_pause(account, time.time() + 5)  # a shorter pause never shortens a longer one
    snap = state.snapshot()
    assert OpenSlot(account, campaign, slot_member(attempt), pytest.approx(time.time() + 3600, abs=60)) in [
        s for s in snap.slots if s.account_id == account
    ]
    assert account in snap.active_accounts
    assert snap.rates[account] == 7.5 and snap.pauses[account] == pytest.approx(time.time() + 40, abs=5)
    state.save_rate(account, None)
    assert account not in state.snapshot().rates
