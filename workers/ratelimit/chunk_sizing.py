"""How many destinations go in one request and in one dial-chunk task (pure).

One rule for both: a bulk provider gets one request's worth, never more than one second of the budget at
the rate enforced now (the adaptive rate may be below the configured one); a one-per-request provider gets
a slice of a second's budget per task, so several workers share an account's rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SINGLE_CHUNK_MAX = 25  # destinations per task for one-per-request providers
# A task of a one-per-request provider takes about 1/32 of a second's budget, so the dispatcher's 2 s horizon
# holds about 64 tasks: enough for every thread of several workers to dial at once. A task sends its requests
# one after the other, so with 1/8 (16 tasks at once, whatever the threads) each thread had to place 12.5
# calls a second at 200 CPS, and on a loaded machine it could not (bench/RESULTS.md, "Send precision").
SINGLE_CHUNK_SLICES = 32
SINGLE_CHUNK_MIN = 3  # but not fewer than this (or a second's budget): each task has its own set-up queries


def sends_in_bulk(max_per_request: int, provider_options: Mapping[str, Any] | None) -> bool:
    """Several destinations per request? (The provider can, and the campaign did not opt out.)"""
    return max_per_request > 1 and (provider_options or {}).get("bulk") is not False


def calls_per_second(rate: float, campaign_cps: float | None) -> float:
    """The rate a campaign may dial at: the account's current rate under the campaign's own cap, if any
    (schema.sql: a campaign's cps is NULL for no cap, else above 0)."""
    return rate if campaign_cps is None else min(rate, campaign_cps)


def request_size(
    max_per_request: int,
    provider_options: Mapping[str, Any] | None,
    rate: float,
    campaign_cps: float | None,
    max_concurrent: int | None = None,
) -> int:
    """Destinations per provider request: one, or a bulk of at most a second's budget (and, when given, the
    free concurrency)."""
    if not sends_in_bulk(max_per_request, provider_options):
        return 1
    budget = calls_per_second(rate, campaign_cps)
    if max_concurrent is not None:
        budget = min(budget, max_concurrent)
    return max(1, min(max_per_request, int(budget)))


def chunk_size(
    max_per_request: int, provider_options: Mapping[str, Any] | None, rate: float, campaign_cps: float | None
) -> int:
    """Destinations per dial-chunk task: one request's worth for a bulk provider, else a slice of a
    second's budget."""
    if sends_in_bulk(max_per_request, provider_options):
        return request_size(max_per_request, provider_options, rate, campaign_cps)
    per_second = calls_per_second(rate, campaign_cps)
    least = min(SINGLE_CHUNK_MIN, math.ceil(per_second))
    return max(1, min(SINGLE_CHUNK_MAX, max(least, math.ceil(per_second / SINGLE_CHUNK_SLICES))))
