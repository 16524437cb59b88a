"""Adaptive CPS per account (AIMD): cut on 429, climb back on clean intervals; maths pure, state in Redis."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from workers import redis_keys
from workers.ratelimit.errors import redis_errors_translated
from workers.ratelimit.scripts import script


@dataclass(frozen=True)
class AimdPolicy:
    """How hard a 429 cuts the rate and how fast it comes back."""

    factor: float = 0.7
    floor: float = 1.0
    cooldown_s: float = 2.0
    recover_interval_s: float = 1.0
    step: float | None = None  # None: 5% of the configured rate, at least 1 CPS
    keep_s: float = 600.0  # an account idle this long forgets its lowered rate

    def __post_init__(self) -> None:
        if not 0.5 <= self.factor <= 0.9:
            raise ValueError("AIMD factor must be within 0.5..0.9")
        if self.floor <= 0 or self.cooldown_s < 0 or self.recover_interval_s < 0:
            raise ValueError("AIMD floor must be > 0 and intervals >= 0")


def recovery_step(configured: float, step: float | None = None) -> float:
    """CPS added per clean interval: the given step, else max(1, 5% of configured)."""
    return step if step is not None else max(1.0, 0.05 * configured)


def next_rate_after_throttle(rate: float, configured: float, *, factor: float, floor: float) -> float:
    """Multiplicative decrease: max(floor, rate * factor), the floor itself never above configured."""
    return max(min(floor, configured), min(rate, configured) * factor)


def next_rate_after_clean_interval(rate: float, configured: float, *, step: float) -> float:
    """Additive increase: min(configured, rate + step)."""
    return min(configured, rate + step)


class AdaptiveRate:
    """The account's current rate in Redis, shared by every worker; read by the CPS script too."""

    def __init__(self, client: redis.Redis, policy: AimdPolicy | None = None) -> None:
        self._client = client
        self.policy = policy or AimdPolicy()

    def decrease(self, account_id: int, configured_rate: float) -> float:
        """Cut the rate after a 429 (once per cooldown however many workers report it); the new rate."""
        return self.decrease_changed(account_id, configured_rate)[1]

    def recover(self, account_id: int, configured_rate: float) -> float:
        """Raise the rate by one step after a clean interval (once per interval); the new rate."""
        return self.recover_changed(account_id, configured_rate)[1]

    def decrease_changed(self, account_id: int, configured_rate: float) -> tuple[bool, float]:
        """decrease(), and whether this call was the one that cut the rate."""
        p = self.policy
        args = [configured_rate, p.factor, p.floor, int(p.cooldown_s * 1e6), int(p.keep_s * 1000)]
        keys = [redis_keys.account_rate(account_id)]
        with redis_errors_translated(self._client):
            changed, rate = script(self._client, "aimd_decrease")(keys=keys, args=args)
        return bool(changed), float(rate)

    def recover_changed(self, account_id: int, configured_rate: float) -> tuple[bool, float]:
        """recover(), and whether this call was the one that raised the rate."""
        p = self.policy
        step = recovery_step(configured_rate, p.step)
        args = [configured_rate, step, int(p.recover_interval_s * 1e6), int(p.keep_s * 1000)]
        keys = [redis_keys.account_rate(account_id)]
        with redis_errors_translated(self._client):
            changed, rate = script(self._client, "aimd_recover")(keys=keys, args=args)
        return bool(changed), float(rate)

    def current_rate(self, account_id: int, configured: float) -> float:
        """min(configured, adaptive): the rate the CPS script enforces now."""
        with redis_errors_translated(self._client):
            stored = self._client.hget(redis_keys.account_rate(account_id), "rate")
        return configured if stored is None else min(configured, float(stored))
