"""Campaigns sharing an account share its budget by weight; unused shares are passed on."""

from __future__ import annotations

import pytest

from workers.dispatch.fair_share import split_by_weight


@pytest.mark.parametrize(
    ("allowance", "weights", "demand", "expected"),
    [
        (20, {1: 1, 2: 1}, {1: 1000, 2: 1000}, {1: 10, 2: 10}),
        (20, {1: 3, 2: 1}, {1: 1000, 2: 1000}, {1: 15, 2: 5}),
        (20, {1: 1, 2: 1}, {1: 1000, 2: 3}, {1: 17, 2: 3}),  # the small one's leftover goes to the big one
        (7, {1: 1, 2: 1, 3: 1}, {1: 100, 2: 100, 3: 100}, {1: 3, 2: 2, 3: 2}),
        (0, {1: 1}, {1: 10}, {1: 0}),
        (10, {1: 1, 2: 1}, {1: 0, 2: 0}, {1: 0, 2: 0}),
        (5, {1: 1000, 2: 1}, {1: 1000, 2: 1000}, {1: 5, 2: 0}),
    ],
)
def test_split_is_proportional_bounded_and_passes_on_unused_share(
    allowance, weights, demand, expected
) -> None:
    shares = split_by_weight(allowance, weights, demand)
    assert shares == expected
    assert sum(shares.values()) <= allowance
    assert all(shares[c] <= demand[c] for c in shares)


def test_small_campaign_is_not_starved_by_a_big_one() -> None:
    shares = split_by_weight(40, {1: 1, 2: 1}, {1: 1_000_000, 2: 50})
    assert shares[2] == 20
