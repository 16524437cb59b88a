"""The global budgets every worker on every host shares, in Redis: CPS, adaptive rate, concurrency slots."""

from __future__ import annotations

import redis

from workers.ratelimit.aimd import AdaptiveRate, AimdPolicy
from workers.ratelimit.backoff import full_jitter_backoff
from workers.ratelimit.cps import CpsLimiter, Reservation
from workers.ratelimit.errors import BulkTooLarge, LimiterError, LimiterUnavailable
from workers.ratelimit.slots import SlotPool

__all__ = [
    "AimdPolicy",
    "Budgets",
    "BulkTooLarge",
    "LimiterError",
    "LimiterUnavailable",
    "Reservation",
    "full_jitter_backoff",
]


class Budgets:
    """An account's (and campaign's) CPS, adaptive rate and concurrency slots, through one Redis client."""

    def __init__(self, client: redis.Redis, *, aimd: AimdPolicy | None = None) -> None:
        self.client = client
        self._cps = CpsLimiter(client)
        self._rate = AdaptiveRate(client, aimd)
        self._slots = SlotPool(client)

    def reserve(
        self,
        account_id: int,
        campaign_id: int | None,
        n_tokens: int,
        account_cps: float,
        campaign_cps: float | None,
        max_wait_s: float,
        window_s: float = 1.0,
    ) -> Reservation:
        """Book a send time for n tokens within max_wait_s, or say how long until one could be booked."""
        return self._cps.reserve(account_id, campaign_id, n_tokens, account_cps, campaign_cps, max_wait_s,
                                 window_s)

    def refund(self, account_id: int, campaign_id: int | None, reservation: Reservation) -> bool:
        """Give back a granted reservation that was never sent (429, transient error)."""
        return self._cps.refund(account_id, campaign_id, reservation)

    def pause_account(self, account_id: int, seconds: float) -> float:
        """Stop every worker on this account for `seconds` (Retry-After); the pause end, epoch seconds."""
        return self._cps.pause_account(account_id, seconds)

    def decrease(self, account_id: int, configured_rate: float) -> float:
        """Cut the account's adaptive rate after a 429, once per cooldown; the new rate."""
        return self._rate.decrease(account_id, configured_rate)

    def recover(self, account_id: int, configured_rate: float) -> float:
        """Raise the account's adaptive rate one step after a clean interval; the new rate."""
        return self._rate.recover(account_id, configured_rate)

    def current_rate(self, account_id: int, configured: float) -> float:
        """The CPS the limiter enforces now: min(configured, adaptive)."""
        return self._rate.current_rate(account_id, configured)

    def acquire(
        self,
        account_id: int,
        campaign_id: int | None,
        attempt_ids: list[str],
        account_max: int,
        campaign_max: int | None,
        lease_s: float,
    ) -> bool:
        """Take a leased slot per attempt on the account and campaign, all or none."""
        return self._slots.acquire(account_id, campaign_id, attempt_ids, account_max, campaign_max, lease_s)

    def release(self, account_id: int, campaign_id: int | None, attempt_ids: list[str]) -> int:
        """Free the attempts' slots, idempotently; how many were held."""
        return self._slots.release(account_id, campaign_id, attempt_ids)

    def renew(self, account_id: int, campaign_id: int | None, attempt_id: str, lease_s: float) -> bool:
        """Extend a live call's lease; False if it was released or had expired."""
        return self._slots.renew(account_id, campaign_id, attempt_id, lease_s)

    def renew_many(
        self, account_id: int, campaign_id: int | None, leases: list[tuple[str, float]]
    ) -> list[bool]:
        """Extend several live calls' leases in one round trip; per lease, was it renewed."""
        return self._slots.renew_many(account_id, campaign_id, leases)

    def live_count(self, account_id: int) -> int:
        """Calls holding a slot on the account now."""
        return self._slots.live_count(account_id)

    def free_slots(self, account_id: int, account_max: int) -> int:
        """Slots the account can still take."""
        return self._slots.free_slots(account_id, account_max)
