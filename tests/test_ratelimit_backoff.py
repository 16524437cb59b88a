"""Full-jitter backoff: bounds, growth, cap and the Retry-After floor, by tables."""

from __future__ import annotations

import random

import pytest

from workers.ratelimit.backoff import backoff_ceiling, full_jitter_backoff


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "ceiling"),
    [
        (0, 0.5, 30.0, 0.5),
        (1, 0.5, 30.0, 1.0),
        (3, 0.5, 30.0, 4.0),
        (5, 0.5, 30.0, 16.0),
        (6, 0.5, 30.0, 30.0),
        (10, 0.5, 30.0, 30.0),
        (5000, 0.5, 30.0, 30.0),
        (2, 0.1, 0.3, 0.3),
    ],
)
def test_ceiling_doubles_per_attempt_up_to_the_cap(
    attempt: int, base: float, cap: float, ceiling: float
) -> None:
    assert backoff_ceiling(attempt, base=base, cap=cap) == pytest.approx(ceiling)


@pytest.mark.parametrize("attempt", [0, 1, 2, 4, 8, 20])
def test_sleep_stays_within_zero_and_the_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = backoff_ceiling(attempt, base=0.5, cap=30.0)
    sleeps = [full_jitter_backoff(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(2000)]
    assert all(0.0 <= s <= ceiling for s in sleeps)
    # Full jitter uses the whole range, not just its top.
    assert min(sleeps) < 0.1 * ceiling and max(sleeps) > 0.9 * ceiling


def test_sleeps_grow_with_attempts_until_the_cap() -> None:
    rng = random.Random(7)
    means = [
        sum(full_jitter_backoff(n, base=0.5, cap=8.0, rng=rng) for _ in range(3000)) / 3000 for n in range(7)
    ]
    assert means[0] < means[1] < means[2] < means[3] < means[4]
    assert means[5] == pytest.approx(4.0, rel=0.1) and means[6] == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "at_least"),
    [(0, 5.0, 5.0), (3, 2.0, 2.0), (10, 0.0, 0.0), (1, 30.0, 30.0)],
)
def test_retry_after_is_a_floor(attempt: int, retry_after: float, at_least: float) -> None:
    rng = random.Random(1)
    for _ in range(500):
        sleep = full_jitter_backoff(attempt, base=0.5, cap=10.0, retry_after=retry_after, rng=rng)
        assert sleep >= at_least
        assert sleep <= max(retry_after, backoff_ceiling(attempt, base=0.5, cap=10.0))


def test_same_rng_seed_gives_the_same_sleeps() -> None:
    a = [full_jitter_backoff(n, rng=random.Random(3)) for n in range(5)]
    b = [full_jitter_backoff(n, rng=random.Random(3)) for n in range(5)]
    assert a == b


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError):
        full_jitter_backoff(-1)
