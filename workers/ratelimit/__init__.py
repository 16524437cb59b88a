"""The global budgets every worker on every host shares, in Redis: CPS, adaptive rate, concurrency slots.

With a BudgetStateStore they also survive Redis losing its state (workers.ratelimit.recovery): the 429
pause and lowered rate are persisted when set, and an empty Redis is rebuilt before anything is booked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from workers.ratelimit.aimd import AdaptiveRate, AimdPolicy
from workers.ratelimit.backoff import full_jitter_backoff
from workers.ratelimit.cps import CpsLimiter, LeftSend, Reservation, micros_up, reach_keys
from workers.ratelimit.errors import BudgetsLost, BulkTooLarge, LimiterError, LimiterUnavailable
from workers.ratelimit.left_sends import LeftSends
from workers.ratelimit.recovery import QUIET_S, BudgetRecovery, BudgetStateStore
from workers.ratelimit.slots import SlotPool

log = logging.getLogger(__name__)
REBUILD_WAIT_S = 0.25  # another process is rebuilding the budgets: hand the work back for this long

__all__ = [
    "AimdPolicy",
    "BudgetStateStore",
    "Budgets",
    "BulkTooLarge",
    "LimiterError",
    "LimiterUnavailable",
    "Reservation",
    "full_jitter_backoff",
]


class Budgets:
    """An account's (and campaign's) CPS, adaptive rate and concurrency slots, through one Redis client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        aimd: AimdPolicy | None = None,
        state: BudgetStateStore | None = None,
        quiet_s: float = QUIET_S,
    ) -> None:
        self.client = client
        guarded = state is not None
        self._cps = CpsLimiter(client, check_epoch=guarded)
        self._left = LeftSends(self._cps.record_left)
        self._rate = AdaptiveRate(client, aimd)
        self._slots = SlotPool(client, check_epoch=guarded)
        self.recovery = BudgetRecovery(client, state, quiet_s=quiet_s) if state is not None else None

    def _persist(self, what: str, save: Callable[..., None], *args: object) -> None:
        """Write a pause or rate through to the state store; Redis stays authoritative while it lives, so a
        failed write only weakens a later rebuild and must not fail the send path."""
        try:
            save(*args)
        except Exception:
            log.warning("could not persist the %s of account %s", what, args[0], exc_info=True)

    def restore(self) -> bool:
        """Rebuild the budgets if Redis lost its state; True once they are in place."""
        return self.recovery.restore() if self.recovery is not None else True

    def reserve(
        self,
        account_id: int,
        campaign_id: int | None,
        n_tokens: int,
        account_cps: float,
        campaign_cps: float | None,
        max_wait_s: float,
        window_s: float = 1.0,
        lead_s: float = 0.0,
    ) -> Reservation:
        """Book a send time for n tokens within max_wait_s, at least lead_s from now, or say how long until
        one could be booked."""
        args = (account_id, campaign_id, n_tokens, account_cps, campaign_cps, max_wait_s, window_s, lead_s)
        try:
            return self._cps.reserve(*args, left=self._left.take())
        except BudgetsLost:
            if not self.restore():
                return Reservation(False, 0.0, REBUILD_WAIT_S)
        return self._cps.reserve(*args)

    def note_left(self, account_id: int, campaign_id: int | None, reservation: Reservation,
                  reach_s: float) -> None:
        """A granted send has left: it reaches the carrier at most `reach_s` after its booked time (its real
        lateness plus the network's spread). Lowered in Redis on this process's next booking, or by the
        flusher within workers.ratelimit.left_sends.COALESCE_S. `campaign_id`: the campaign when its own CPS
        cap was booked too, else None."""
        if not reservation.granted:
            return
        booked_us = int(reservation.token.split(":", 1)[0])
        self._left.add(LeftSend(reach_keys(account_id, campaign_id), reservation.token,
                                booked_us + micros_up(reach_s)))

    def flush_left(self) -> None:
        """Send the pending reach reports now (tests; workers leave it to the flusher)."""
        self._left.flush()

    def refund(self, account_id: int, campaign_id: int | None, reservation: Reservation) -> bool:
        """Give back a granted reservation that was never sent (429, transient error)."""
        return self._cps.refund(account_id, campaign_id, reservation)

    def pause_account(self, account_id: int, seconds: float) -> float:
        """Stop every worker on this account for `seconds` (Retry-After); the pause end, epoch seconds."""
        until = self._cps.pause_account(account_id, seconds)
        if self.recovery is not None:
            self._persist("pause", self.recovery.store.save_pause, account_id, until)
        return until

    def decrease(self, account_id: int, configured_rate: float) -> float:
        """Cut the account's adaptive rate after a 429, once per cooldown; the new rate."""
        changed, rate = self._rate.decrease_changed(account_id, configured_rate)
        if changed and self.recovery is not None:
            self._persist("lowered rate", self.recovery.store.save_rate, account_id, rate)
        return rate

    def recover(self, account_id: int, configured_rate: float) -> float:
        """Raise the account's adaptive rate one step after a clean interval; the new rate."""
        changed, rate = self._rate.recover_changed(account_id, configured_rate)
        if changed and self.recovery is not None:
            back = rate if rate < configured_rate else None
            self._persist("recovered rate", self.recovery.store.save_rate, account_id, back)
        return rate

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
        args = (account_id, campaign_id, attempt_ids, account_max, campaign_max, lease_s)
        try:
            return self._slots.acquire(*args)
        except BudgetsLost:
            if not self.restore():
                return False
        return self._slots.acquire(*args)

    def release(
        self, account_id: int, campaign_id: int | None, attempt_ids: list[str], *, call_ended: bool = False
    ) -> int:
        """Free the attempts' slots, idempotently; how many were held. `call_ended`: announce the freed
        lines for an immediate refill (workers.ratelimit.slots.SlotPool.release)."""
        return self._slots.release(account_id, campaign_id, attempt_ids, call_ended=call_ended)

    def note_lines_bound(self, account_id: int, bound: bool, lease_s: float) -> None:
        """Whether the account's free lines limit its dispatch (workers.ratelimit.slots.SlotPool)."""
        self._slots.note_lines_bound(account_id, bound, lease_s)

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
