"""Concurrency slots against a real Redis: the max holds across processes, bulks are all-or-nothing,
release is idempotent, leases expire, renew never resurrects."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import time

import pytest
import redis

from workers import redis_keys
from workers.ratelimit import Budgets

_ids = itertools.count(3000)


@pytest.fixture()
def budgets(redis_client: redis.Redis) -> Budgets:
    return Budgets(redis_client)


def _race(account: int, campaign: int, worker: int, seconds: float, out: multiprocessing.Queue) -> None:
    """One worker process: take 1-3 slots, check the sets, hang up, repeat; report the largest count seen."""
    client = redis.Redis.from_url(os.environ["DIALER_REDIS_URL"])
    budgets = Budgets(client)
    rng = random.Random(os.getpid())
    worst_account = worst_campaign = acquired = 0
    deadline = time.monotonic() + seconds
    for i in itertools.count():
        if time.monotonic() >= deadline:
            break
        ids = [f"w{worker}-{i}-{k}" for k in range(rng.choice([1, 1, 2, 3]))]
        if budgets.acquire(account, campaign, ids, 5, 4, 30.0):
            acquired += 1
            worst_account = max(worst_account, client.zcard(redis_keys.account_slots(account)))
            worst_campaign = max(worst_campaign, client.zcard(redis_keys.campaign_slots(campaign)))
            time.sleep(rng.uniform(0, 0.003))
            budgets.release(account, campaign, ids)
    out.put((worst_account, worst_campaign, acquired))


def test_four_processes_never_hold_more_than_max(redis_client: redis.Redis) -> None:
    account, campaign = next(_ids), next(_ids)
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(account, campaign, w, 1.5, out)) for w in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert max(r[0] for r in results) <= 5
    assert max(r[1] for r in results) <= 4
    assert max(r[1] for r in results) >= 3  # the race was real: the sets did fill up
    assert all(r[2] > 0 for r in results)
    assert Budgets(redis_client).live_count(account) == 0


def test_bulk_acquire_is_all_or_nothing(budgets: Budgets) -> None:
    account, campaign = next(_ids), next(_ids)
    assert budgets.acquire(account, None, ["a", "b"], 3, None, 30.0)
    assert not budgets.acquire(account, None, ["c", "d"], 3, None, 30.0)
    assert budgets.live_count(account) == 2
    # The campaign's own cap refuses the bulk and the account set is left untouched.
    assert not budgets.acquire(account, campaign, ["e", "f", "g"], 10, 2, 30.0)
    assert budgets.live_count(account) == 2
    assert budgets.acquire(account, campaign, ["e", "f"], 10, 2, 30.0)
    assert budgets.free_slots(account, 10) == 6


def test_reacquiring_a_held_id_takes_no_second_slot(budgets: Budgets) -> None:
    account = next(_ids)
    assert budgets.acquire(account, None, ["a", "a"], 1, None, 30.0)
    assert budgets.acquire(account, None, ["a"], 1, None, 30.0)  # a redelivered task
    assert budgets.live_count(account) == 1


def test_release_is_idempotent(budgets: Budgets) -> None:
    account, campaign = next(_ids), next(_ids)
    assert budgets.release(account, campaign, ["early-hangup"]) == 0  # beat the dial response: harmless
    budgets.acquire(account, campaign, ["a", "b"], 2, 2, 30.0)
    assert budgets.release(account, campaign, ["a"]) == 1
    assert budgets.release(account, campaign, ["a"]) == 0
    assert budgets.live_count(account) == 1
    assert budgets.acquire(account, campaign, ["c"], 2, 2, 30.0)


def test_expired_leases_are_reclaimed(budgets: Budgets) -> None:
    account = next(_ids)
    assert budgets.acquire(account, None, ["lost-hangup"], 1, None, 0.2)
    assert not budgets.acquire(account, None, ["next"], 1, None, 30.0)
    time.sleep(0.25)
    assert budgets.live_count(account) == 0
    assert budgets.acquire(account, None, ["next"], 1, None, 30.0)


def test_renew_extends_a_live_lease(budgets: Budgets) -> None:
    account = next(_ids)
    budgets.acquire(account, None, ["a"], 1, None, 0.2)
    assert budgets.renew(account, None, "a", 30.0)
    time.sleep(0.25)
    assert budgets.live_count(account) == 1


def test_renew_does_not_resurrect_a_released_or_expired_slot(
    budgets: Budgets, redis_client: redis.Redis
) -> None:
    account, campaign = next(_ids), next(_ids)
    budgets.acquire(account, campaign, ["released", "expired"], 5, 5, 0.2)
    budgets.release(account, campaign, ["released"])
    assert not budgets.renew(account, campaign, "released", 30.0)
    time.sleep(0.25)
    assert not budgets.renew(account, campaign, "expired", 30.0)
    for key in (redis_keys.account_slots(account), redis_keys.campaign_slots(campaign)):
        assert redis_client.zscore(key, "released") is None
        assert (redis_client.zscore(key, "expired") or 0) < time.time()


def test_renew_many_renews_only_live_slots_each_with_its_own_lease(
    budgets: Budgets, redis_client: redis.Redis
) -> None:
    account, campaign = next(_ids), next(_ids)
    budgets.acquire(account, campaign, ["short", "long", "gone"], 5, 5, 0.3)
    budgets.release(account, campaign, ["gone"])
    renewed = budgets.renew_many(account, campaign, [("short", 5.0), ("gone", 30.0), ("long", 60.0)])
    assert renewed == [True, False, True]
    now = time.time()
    for key in (redis_keys.account_slots(account), redis_keys.campaign_slots(campaign)):
        assert 4.0 < (redis_client.zscore(key, "short") or 0) - now <= 5.1
        assert 59.0 < (redis_client.zscore(key, "long") or 0) - now <= 60.1
        assert redis_client.zscore(key, "gone") is None
        assert redis_client.pttl(key) > 59_000  # the set outlives its longest lease
    time.sleep(0.35)
    assert budgets.live_count(account) == 2


def test_slot_sets_expire_after_their_longest_lease(budgets: Budgets, redis_client: redis.Redis) -> None:
    account = next(_ids)
    budgets.acquire(account, None, ["a"], 1, None, 2.0)
    assert 2000 < redis_client.pttl(redis_keys.account_slots(account)) <= 3100
