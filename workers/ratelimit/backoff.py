"""Full-jitter exponential backoff for 429s and transient errors: pure, so it is tested by tables."""

from __future__ import annotations

import random

DEFAULT_BASE_S = 0.5
DEFAULT_CAP_S = 30.0


def backoff_ceiling(attempt: int, *, base: float = DEFAULT_BASE_S, cap: float = DEFAULT_CAP_S) -> float:
    """The upper bound of the n-th backoff: min(cap, base * 2**attempt)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Compare exponents instead of computing 2**attempt, which overflows a float after ~1024 attempts.
    if attempt >= 64 or base * 2.0**attempt >= cap:
        return cap
    return base * 2.0**attempt


def full_jitter_backoff(
    attempt: int,
    *,
    base: float = DEFAULT_BASE_S,
    cap: float = DEFAULT_CAP_S,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to sleep: uniform(0, min(cap, base * 2**attempt)), at least Retry-After."""
    # Full jitter (not equal or decorrelated) spreads the workers that all saw the same 429 the widest.
    sleep = (rng or random).uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))
    if retry_after is not None and retry_after > sleep:
        return float(retry_after)
    return sleep
