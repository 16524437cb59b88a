"""The account-wide answer to a carrier's 429, and the recovery after clean sends.

A 429 lowers the account's adaptive rate for every worker (AIMD, in Redis) and, with a Retry-After, pauses
the whole account; the task itself backs off with full jitter a few times before handing the work back.
"""

from __future__ import annotations

import random
import time

from workers.providers.errors import Throttled
from workers.ratelimit import Budgets
from workers.ratelimit.backoff import full_jitter_backoff

THROTTLE_RETRIES_IN_TASK = 3  # 429s absorbed inside the task before handing the work back
RECOVERY_CHECK_S = 1.0
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0

_last_recovery: dict[int, float] = {}


def throttle_backoff(throttle_round: int, throttled: Throttled, rng: random.Random) -> float:
    """Seconds to wait before this request's next try after its `throttle_round`-th 429."""
    return full_jitter_backoff(
        throttle_round, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, retry_after=throttled.retry_after, rng=rng
    )


def slow_account_down(budgets: Budgets, account_id: int, configured_cps: float, throttled: Throttled) -> None:
    """The carrier said 429: every worker of the account dials slower, and stops until Retry-After if sent."""
    budgets.decrease(account_id, configured_cps)
    if throttled.retry_after:
        budgets.pause_account(account_id, throttled.retry_after)


def recover_rate(budgets: Budgets, account_id: int, configured: float) -> None:
    """A clean send: let the adaptive rate climb back. Redis allows one step a second anyway, so this
    process asks at most that often rather than once per call."""
    now = time.monotonic()
    if now - _last_recovery.get(account_id, 0.0) >= RECOVERY_CHECK_S:
        _last_recovery[account_id] = now
        budgets.recover(account_id, configured)
