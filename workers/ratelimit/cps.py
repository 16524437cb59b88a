"""Global CPS budgets: reserve a send time for n tokens on an account (and campaign), refund, pause."""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from workers import redis_keys
from workers.ratelimit.errors import BudgetsLost, BulkTooLarge, redis_errors_translated
from workers.ratelimit.scripts import script

_GRANTED, _REFUSED, _TOO_LARGE, _LOST = 1, 0, 2, 3


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
    """Per budget: its state hash, its sends by booked time, its sends by reach (cps.lua)."""
    keys = [redis_keys.account_cps(account_id), redis_keys.account_cps_sends(account_id),
            redis_keys.account_cps_reach(account_id)]
    if campaign_id is not None:
        keys += [redis_keys.campaign_cps(campaign_id), redis_keys.campaign_cps_sends(campaign_id),
                 redis_keys.campaign_cps_reach(campaign_id)]
    return keys


def micros_up(seconds: float) -> int:
    """Whole microseconds, rounded up (never down: a reach 1 us short is a window 1 us too narrow), ignoring
    the float noise of sums such as 1.22 - 1.0."""
    return max(0, math.ceil(round(seconds * 1e6, 3)))


def reach_keys(account_id: int, campaign_id: int | None) -> tuple[str, ...]:
    """The reach sets a send of the account (and of a campaign with a CPS cap of its own) is counted in."""
    return tuple(_budget_keys(account_id, campaign_id)[2::3])


@dataclass(frozen=True)
class LeftSend:
    """A booked send that has left: it can now reach the carrier no later than `reach_us` (Redis clock)."""

    keys: tuple[str, ...]  # reach_keys() of its budgets
    member: str  # its booking's token
    reach_us: int


def _lower_reach(pipe: Pipeline, sends: list[LeftSend]) -> None:
    for send in sends:
        for key in send.keys:
            pipe.zadd(key, {send.member: send.reach_us}, xx=True, lt=True)


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
        now_us: int = 0,
        left: list[LeftSend] | None = None,
    ) -> Reservation:
        """Book a send time for n tokens within max_wait_s, or say how long until one could be booked.
        The send may reach the carrier up to `window_s` - 1 s after its booked time (its allowed lateness and
        the network's spread), and is counted so until record_left() says when it really left; it is
        booked at least `lead_s` from now (the caller's work before it can leave). `now_us` replays a clock
        (tests of recorded traces); 0, the default, is Redis's own. `left`: sends that have left since, whose
        reach is lowered first on the same round trip (record_left)."""
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
        keys = _budget_keys(account_id, None) + account_keys + _budget_keys(account_id, capped)[3:]
        args = [n_tokens, account_cps, campaign_cps or 0, int(max_wait_s * 1e6), self._keep_ms,
                micros_up(window_s - 1.0), int(self._check_epoch), int(lead_s * 1e6), int(now_us)]
        with redis_errors_translated(self._client):
            cps = script(self._client, "cps")
            answer = None
            if left:
                # EVALSHA by hand: a Script run in a pipeline first asks SCRIPT EXISTS, a round trip more.
                pipe = self._client.pipeline(transaction=False)
                _lower_reach(pipe, left)
                pipe.evalsha(cps.sha, len(keys), *keys, *args)
                try:
                    answer = pipe.execute()[-1]
                except NoScriptError:  # Redis forgot its scripts: the lowering is done, book as below
                    answer = None
            if answer is None:
                answer = cps(keys=keys, args=args)
        status, send_us, booked_at_us, retry_us, max_tokens, member = answer
        if status == _LOST:
            raise BudgetsLost()
        if status == _TOO_LARGE:
            raise BulkTooLarge(n_tokens, int(max_tokens))
        if status == _REFUSED:
            return Reservation(False, 0.0, int(retry_us) / 1e6)
        return Reservation(
            True,
            (int(send_us) - int(booked_at_us)) / 1e6,
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

    def record_left(self, sends: list[LeftSend]) -> None:
        """Lower each sent booking's reach to when it really left, in one round trip. Only ever lowers
        (ZADD XX LT): a send refunded meanwhile stays gone, and a late report cannot widen anything."""
        if not sends:
            return
        with redis_errors_translated(self._client):
            pipe = self._client.pipeline(transaction=False)
            _lower_reach(pipe, sends)
            pipe.execute()

    def pause_account(self, account_id: int, seconds: float) -> float:
        """Stop every worker granting tokens on this account for `seconds`; the pause end (epoch seconds)."""
        with redis_errors_translated(self._client):
            until = script(self._client, "pause")(keys=[redis_keys.account_pause(account_id)], args=[seconds])
        return int(until) / 1e6
