"""Global CPS budgets: reserve a send time for n tokens on an account (and campaign), refund, pause."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from workers import redis_keys
from workers.ratelimit.errors import BudgetsLost, BulkTooLarge, redis_errors_translated
from workers.ratelimit.scripts import script

_GRANTED, _REFUSED, _TOO_LARGE, _LOST = 1, 0, 2, 3
# How long a window one host widened stays the whole account's (cps.lua): longer than the furthest ahead a
# booking is made (workers.dialing.send_booking.MAX_RESERVATION_WAIT_S, 2 s) plus the widest window (1.05 s),
# so no booking can fall inside a wide one's window without seeing it. It was 10 s; a slow start then kept
# every host on the widest window for a quarter of a minute (bench/RESULTS.md, "Send precision, second
# session").
WINDOW_HOLD_S = 3.2


@dataclass(frozen=True)
class Reservation:
    """The answer to reserve(): sleep send_at_delay_s then send, or hand the work back for retry_after_s."""

    granted: bool
    send_at_delay_s: float
    retry_after_s: float
    n_tokens: int = 0
    send_at: float = 0.0  # Redis TIME (epoch seconds) of the booked send; 0 when refused
    token: str = ""  # names the booking, for refund()


def _budget_keys(account_id: int, campaign_id: int | None) -> list[str]:
    keys = [redis_keys.account_cps(account_id), redis_keys.account_cps_sends(account_id)]
    if campaign_id is not None:
        keys += [redis_keys.campaign_cps(campaign_id), redis_keys.campaign_cps_sends(campaign_id)]
    return keys


class CpsLimiter:
    """Calls-per-second budgets shared by every worker on every host, enforced by one Lua script."""

    def __init__(self, client: redis.Redis, *, keep_s: float = 5.0, check_epoch: bool = False) -> None:
        self._client = client
        self._keep_ms = int(keep_s * 1000)
        self._check_epoch = check_epoch

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
        """Book a send time for n tokens within max_wait_s, or say how long until one could be booked.
        `window_s` > 1 keeps the count in a longer window, a guard against send-time jitter; the send is
        booked at least `lead_s` from now (the caller's work before it can leave)."""
        if n_tokens < 1:
            raise ValueError("n_tokens must be >= 1")
        if account_cps <= 0 or (campaign_cps is not None and campaign_cps <= 0):
            raise ValueError("CPS limits must be > 0")
        # A campaign without a cap of its own is bounded by the account alone.
        capped = campaign_id if campaign_cps is not None else None
        account_keys = [
            redis_keys.account_rate(account_id),
            redis_keys.account_pause(account_id),
            redis_keys.budgets_epoch(),
        ]
        keys = _budget_keys(account_id, None) + account_keys + _budget_keys(account_id, capped)[2:]
        args = [n_tokens, account_cps, campaign_cps or 0, int(max_wait_s * 1e6), self._keep_ms,
                int(window_s * 1e6), int(self._check_epoch), int(lead_s * 1e6), int(WINDOW_HOLD_S * 1e6)]
        with redis_errors_translated(self._client):
            status, send_us, now_us, retry_us, max_tokens, member = script(self._client, "cps")(
                keys=keys, args=args
            )
        if status == _LOST:
            raise BudgetsLost()
        if status == _TOO_LARGE:
            raise BulkTooLarge(n_tokens, int(max_tokens))
        if status == _REFUSED:
            return Reservation(False, 0.0, int(retry_us) / 1e6)
        return Reservation(
            True,
            (int(send_us) - int(now_us)) / 1e6,
            0.0,
            n_tokens=n_tokens,
            send_at=int(send_us) / 1e6,
            token=member.decode() if isinstance(member, bytes) else str(member),
        )

    def refund(self, account_id: int, campaign_id: int | None, reservation: Reservation) -> bool:
        """Give back a granted reservation that was never sent; False if it was unknown or expired."""
        if not reservation.granted:
            return False
        keys = _budget_keys(account_id, campaign_id)
        with redis_errors_translated(self._client):
            found = script(self._client, "cps_refund")(keys=keys, args=[reservation.token])
        return int(found) > 0

    def pause_account(self, account_id: int, seconds: float) -> float:
        """Stop every worker granting tokens on this account for `seconds`; the pause end (epoch seconds)."""
        with redis_errors_translated(self._client):
            until = script(self._client, "pause")(keys=[redis_keys.account_pause(account_id)], args=[seconds])
        return int(until) / 1e6
