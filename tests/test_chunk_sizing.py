"""Destinations per request and per dial-chunk task: one rule for the dispatcher and the dialer."""

from __future__ import annotations

from typing import Any

import pytest

from workers.ratelimit.chunk_sizing import chunk_size, request_size

BULK = 1000  # a Plivo/Vobiz request takes up to a thousand destinations


@pytest.mark.parametrize(
    ("max_per_request", "options", "rate", "campaign_cps", "max_concurrent", "expected"),
    [
        (1, {}, 50.0, None, None, 1),  # one per request: always one
        (BULK, {"bulk": False}, 50.0, None, None, 1),  # the campaign opted out of bulk
        (BULK, {}, 50.0, None, None, 50),  # no campaign cap: a second of the account's rate
        (BULK, None, 50.0, None, None, 50),  # no options at all
        (BULK, {}, 50.0, 20.0, None, 20),  # the campaign's own cap
        (BULK, {}, 12.5, 20.0, None, 12),  # the adaptive rate fell under the campaign's cap
        (BULK, {}, 50.0, None, 30, 30),  # no more than the free lines
        (BULK, {}, 0.4, None, None, 1),  # at least one
        (BULK, {}, 5000.0, None, None, BULK),  # never more than the provider takes
    ],
)
def test_a_request_never_holds_more_than_a_second_of_budget(
    max_per_request: int, options: dict[str, Any] | None, rate: float, campaign_cps: float | None,
    max_concurrent: int | None, expected: int,
) -> None:
    assert request_size(max_per_request, options, rate, campaign_cps, max_concurrent) == expected


@pytest.mark.parametrize(
    ("max_per_request", "options", "rate", "campaign_cps", "expected"),
    [
        (BULK, {}, 50.0, None, 50),  # bulk: one request's worth per task
        (BULK, {}, 50.0, 10.0, 10),
        (1, {}, 200.0, None, 7),  # one per request: a 32nd of a second's budget per task
        (1, {}, 1000.0, None, 25),  # … at most 25
        (1, {}, 50.0, None, 3),  # … at least 3
        (1, {}, 400.0, 160.0, 5),  # the campaign's cap, not the account's
        (BULK, {"bulk": False}, 320.0, None, 10),  # opted out of bulk: sized like one per request
        (1, {}, 2.0, None, 2),  # never more than a second's budget for the minimum
        (1, {}, 0.5, None, 1),  # at least one
    ],
)
def test_a_chunk_is_one_request_or_a_slice_of_a_second(
    max_per_request: int, options: dict[str, Any], rate: float, campaign_cps: float | None, expected: int
) -> None:
    assert chunk_size(max_per_request, options, rate, campaign_cps) == expected
