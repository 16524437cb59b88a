"""The bound on Redis's clock against this host's (pure): it narrows with every round trip, widens only by
the clocks' possible drift, and a stepped clock resets it rather than leaving it wrong."""

from __future__ import annotations

import pytest

from workers.dialing.redis_clock import MAX_DRIFT, RedisClock

OFFSET = 1_700_000_000.0  # Redis's epoch seconds against a monotonic clock near 0


def test_one_round_trip_bounds_the_offset_by_its_own_length() -> None:
    bound = RedisClock().observe(asked=10.0, redis_now=OFFSET + 10.004, heard=10.030)
    assert (bound.lo, bound.hi) == pytest.approx((OFFSET - 0.026, OFFSET + 0.004))
    assert bound.width == pytest.approx(0.030)


def test_round_trips_slow_on_either_side_narrow_it_to_what_both_allow() -> None:
    clock = RedisClock(max_drift=0.0)
    clock.observe(asked=10.0, redis_now=OFFSET + 10.001, heard=10.030)  # slow on the way back
    bound = clock.observe(asked=11.0, redis_now=OFFSET + 11.029, heard=11.030)  # slow on the way there
    assert (bound.lo, bound.hi) == pytest.approx((OFFSET - 0.001, OFFSET + 0.001))


def test_a_slow_round_trip_later_does_not_widen_what_quick_ones_taught() -> None:
    clock = RedisClock()
    clock.observe(asked=10.0, redis_now=OFFSET + 10.0005, heard=10.001)
    bound = clock.observe(asked=12.0, redis_now=OFFSET + 12.0005, heard=12.040)
    # The old bound, widened by the drift since (2.039 s), cut by the new round trip on the side it knows.
    assert bound.width == pytest.approx(0.001 + MAX_DRIFT * 2.039, abs=1e-6)


def test_the_bound_widens_with_the_time_the_clocks_may_have_drifted() -> None:
    clock = RedisClock()
    clock.observe(asked=10.0, redis_now=OFFSET + 10.0005, heard=10.001)
    bound = clock.observe(asked=110.0, redis_now=OFFSET + 110.0, heard=110.5)  # 100 s later, a slow one
    assert bound.width == pytest.approx(0.0005 + MAX_DRIFT * 100.499, abs=1e-6)


def test_a_stepped_clock_starts_again_from_the_new_round_trip() -> None:
    clock = RedisClock()
    clock.observe(asked=10.0, redis_now=OFFSET + 10.0005, heard=10.001)
    bound = clock.observe(asked=11.0, redis_now=OFFSET + 11.5005, heard=11.001)  # Redis's clock jumped 0.5 s
    assert (bound.lo, bound.hi) == pytest.approx((OFFSET + 0.4995, OFFSET + 0.5005))
