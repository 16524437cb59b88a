"""Adaptive rate: the pure maths by tables, and its atomic application in Redis."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from workers import redis_keys
from workers.ratelimit import AimdPolicy, Budgets
from workers.ratelimit.aimd import next_rate_after_clean_interval, next_rate_after_throttle, recovery_step

_ids = itertools.count(1000)


@pytest.mark.parametrize(
    ("rate", "configured", "factor", "floor", "expected"),
    [
        (100.0, 100.0, 0.7, 1.0, 70.0),
        (100.0, 100.0, 0.5, 1.0, 50.0),
        (10.0, 100.0, 0.9, 1.0, 9.0),
        (1.2, 100.0, 0.5, 1.0, 1.0),  # never below the floor
        (200.0, 100.0, 0.7, 1.0, 70.0),  # a stale rate above configured is clamped first
        (2.0, 2.0, 0.5, 5.0, 2.0),  # a floor above configured is configured
    ],
)
def test_throttle_cuts_multiplicatively_down_to_the_floor(
    rate: float, configured: float, factor: float, floor: float, expected: float
) -> None:
    assert next_rate_after_throttle(rate, configured, factor=factor, floor=floor) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rate", "configured", "step", "expected"),
    [(70.0, 100.0, 5.0, 75.0), (98.0, 100.0, 5.0, 100.0), (100.0, 100.0, 5.0, 100.0), (1.0, 10.0, 1.0, 2.0)],
)
def test_clean_interval_adds_a_step_up_to_configured(
    rate: float, configured: float, step: float, expected: float
) -> None:
    assert next_rate_after_clean_interval(rate, configured, step=step) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("configured", "step", "expected"),
    [(100.0, None, 5.0), (10.0, None, 1.0), (1000.0, None, 50.0), (100.0, 2.5, 2.5)],
)
def test_default_step_is_five_percent_or_one_cps(
    configured: float, step: float | None, expected: float
) -> None:
    assert recovery_step(configured, step) == pytest.approx(expected)


@pytest.mark.parametrize("factor", [0.4, 0.95])
def test_factor_outside_half_to_nine_tenths_is_refused(factor: float) -> None:
    with pytest.raises(ValueError):
        AimdPolicy(factor=factor)


@pytest.mark.parametrize(
    ("configured", "factor", "floor"), [(100.0, 0.7, 1.0), (13.0, 0.5, 8.0), (3.0, 0.9, 1.0)]
)
def test_redis_decrease_applies_the_same_maths(
    redis_client: redis.Redis, configured: float, factor: float, floor: float
) -> None:
    budgets = Budgets(redis_client, aimd=AimdPolicy(factor=factor, floor=floor, cooldown_s=0.0))
    account = next(_ids)
    expected = configured
    for _ in range(4):
        expected = next_rate_after_throttle(expected, configured, factor=factor, floor=floor)
        assert budgets.decrease(account, configured) == pytest.approx(expected)
    assert budgets.current_rate(account, configured) == pytest.approx(expected)


def test_concurrent_429s_within_the_cooldown_decrease_once(redis_client: redis.Redis) -> None:
    budgets = Budgets(redis_client, aimd=AimdPolicy(factor=0.7, cooldown_s=2.0))
    account = next(_ids)
    with ThreadPoolExecutor(16) as pool:
        rates = list(pool.map(lambda _: budgets.decrease(account, 100.0), range(64)))
    assert all(r == pytest.approx(70.0) for r in rates)
    assert budgets.current_rate(account, 100.0) == pytest.approx(70.0)


def test_recovery_climbs_back_to_configured_and_never_above(redis_client: redis.Redis) -> None:
    budgets = Budgets(
        redis_client, aimd=AimdPolicy(factor=0.5, cooldown_s=0.0, recover_interval_s=0.0, step=3.0)
    )
    account = next(_ids)
    budgets.decrease(account, 20.0)
    budgets.decrease(account, 20.0)  # 5.0
    seen = [budgets.recover(account, 20.0) for _ in range(10)]
    assert seen[:5] == pytest.approx([8.0, 11.0, 14.0, 17.0, 20.0])
    assert all(r <= 20.0 for r in seen) and seen[-1] == 20.0
    # Back at configured the account leaves no state behind.
    assert not redis_client.exists(redis_keys.account_rate(account))


def test_recovery_happens_at_most_once_per_interval(redis_client: redis.Redis) -> None:
    budgets = Budgets(
        redis_client, aimd=AimdPolicy(factor=0.5, cooldown_s=0.0, recover_interval_s=0.3, step=1.0)
    )
    account = next(_ids)
    budgets.decrease(account, 10.0)  # 5.0; the decrease also starts the interval
    assert budgets.recover(account, 10.0) == 5.0
    time.sleep(0.35)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: budgets.recover(account, 10.0), range(32)))
    assert budgets.current_rate(account, 10.0) == 6.0


def test_cps_script_paces_at_the_adaptive_rate(redis_client: redis.Redis) -> None:
    budgets = Budgets(redis_client, aimd=AimdPolicy(factor=0.5))
    account = next(_ids)
    budgets.decrease(account, 20.0)  # 10 CPS
    sends = [budgets.reserve(account, None, 1, 20.0, None, 5.0).send_at for _ in range(4)]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps == pytest.approx([0.1] * 3, abs=1e-6)


def test_an_isolated_429_does_not_cut_the_rate_and_a_second_within_the_confirm_window_does(
    redis_client: redis.Redis,
) -> None:
    budgets = Budgets(redis_client, aimd=AimdPolicy(factor=0.7, cooldown_s=0.0, confirm_s=0.3))
    account = next(_ids)
    assert budgets.decrease(account, 100.0) == 100.0, "one 429 alone: the carrier is at budget, not below"
    assert budgets.current_rate(account, 100.0) == 100.0
    assert budgets.decrease(account, 100.0) == pytest.approx(70.0), "a second 429 soon after: cut"
    time.sleep(0.35)
    assert budgets.decrease(account, 100.0) == pytest.approx(70.0), "isolated again once the window passed"


def test_with_no_confirm_window_every_429_cuts(redis_client: redis.Redis) -> None:
    budgets = Budgets(redis_client, aimd=AimdPolicy(factor=0.7, cooldown_s=0.0, confirm_s=0.0))
    account = next(_ids)
    assert budgets.decrease(account, 100.0) == pytest.approx(70.0)
    assert not redis_client.exists(redis_keys.account_last_throttle(account))
