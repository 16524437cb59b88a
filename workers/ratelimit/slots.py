"""Global concurrency budgets: a leased slot per live call, per account and optionally per campaign.

A slot's member is its call attempt's id as a decimal string (`slot_member`; in SQL `a.id::text`), the one
format every taker and freer uses: the dial task (which reserves the attempt id before taking the slot), the
callback applier, the reaper and the rebuild after Redis lost its state (workers.ratelimit.postgres_state).
A slot belongs to one attempt, so freeing one attempt's slot can never free another's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import redis

from campaigns.states import slot_member as slot_member  # the format every taker and freer shares
from workers import redis_keys
from workers.ratelimit.errors import BudgetsLost, redis_errors_translated
from workers.ratelimit.scripts import script

T = TypeVar("T")

# The line-freed list holds at most this many announcements and is dropped this long after the last one:
# with no listener running (an API-only host, listeners all down) it stays a small key, never a growing one.
LINES_FREED_CAP = 1000
LINES_FREED_TTL_MS = 60_000


def _slot_keys(account_id: int, campaign_id: int | None) -> list[str]:
    keys = [redis_keys.account_slots(account_id)]
    if campaign_id is not None:
        keys.append(redis_keys.campaign_slots(campaign_id))
    return keys


class SlotPool:
    """Live calls as sorted sets (member attempt id, score lease expiry), shared by every worker."""

    def __init__(self, client: redis.Redis, *, check_epoch: bool = False) -> None:
        self._client = client
        self._check_epoch = check_epoch

    def acquire(
        self,
        account_id: int,
        campaign_id: int | None,
        attempt_ids: list[str],
        account_max: int,
        campaign_max: int | None,
        lease_s: float,
    ) -> bool:
        """Take one slot per attempt id on the account and campaign, all or none; False if they don't fit."""
        ids = list(dict.fromkeys(attempt_ids))  # a duplicate id is one call, one slot
        if not ids:
            return True
        keys = [redis_keys.budgets_epoch()]
        keys += _slot_keys(account_id, campaign_id if campaign_max is not None else None)
        args: list[str | int] = [int(lease_s * 1e6), account_max, campaign_max or 0, int(self._check_epoch)]
        args += ids
        with redis_errors_translated(self._client):
            acquired = int(script(self._client, "slots_acquire")(keys=keys, args=args))
        if acquired < 0:
            raise BudgetsLost()
        return acquired == 1

    def release(
        self, account_id: int, campaign_id: int | None, attempt_ids: list[str], *, call_ended: bool = False
    ) -> int:
        """Free the attempts' slots; idempotent (a duplicate or early hangup is harmless). Slots freed.

        `call_ended`: the calls are over (a final callback), so a freed line is announced on the line-freed
        list for a refill listener to fill at once, if the account is line-bound (note_lines_bound). The dial
        path's own give-backs (a send undone, a booking refused, a 429) leave it False: refilling those would
        dial again straight into the reason the send was given back."""
        if not attempt_ids:
            return 0
        keys = [redis_keys.lines_freed(), redis_keys.lines_bound(account_id)]
        keys += _slot_keys(account_id, campaign_id)
        args: list[str | int] = [int(call_ended), account_id, LINES_FREED_CAP, LINES_FREED_TTL_MS]
        args += attempt_ids
        with redis_errors_translated(self._client):
            return int(script(self._client, "slots_release")(keys=keys, args=args))

    def note_lines_bound(self, account_id: int, bound: bool, lease_s: float) -> None:
        """Say whether the account's free lines (not its CPS) limit its dispatch while destinations wait: only
        then do ended calls announce freed lines. Set for `lease_s` (each dispatcher pass renews it), so a
        stopped dispatcher stops the announcements too."""
        key = redis_keys.lines_bound(account_id)
        with redis_errors_translated(self._client):
            if bound:
                self._client.set(key, b"1", px=int(lease_s * 1000))
            else:
                self._client.delete(key)

    def renew(self, account_id: int, campaign_id: int | None, attempt_id: str, lease_s: float) -> bool:
        """Extend a live lease; False (and nothing written) if the slot was released or had expired."""
        return self.renew_many(account_id, campaign_id, [(attempt_id, lease_s)])[0]

    def renew_many(
        self, account_id: int, campaign_id: int | None, leases: list[tuple[str, float]]
    ) -> list[bool]:
        """Extend several live leases in one round trip: per (attempt id, lease), was it renewed."""
        if not leases:
            return []
        keys = _slot_keys(account_id, campaign_id)
        args: list[str | int] = []
        for attempt_id, lease_s in leases:
            args += [int(lease_s * 1e6), attempt_id]
        with redis_errors_translated(self._client):
            renewed = script(self._client, "slots_renew")(keys=keys, args=args)
        return [bool(flag) for flag in renewed]

    def live_count(self, account_id: int) -> int:
        """Calls holding a slot on the account now, expired leases dropped."""
        with redis_errors_translated(self._client):
            return int(script(self._client, "slots_count")(keys=[redis_keys.account_slots(account_id)]))

    def free_slots(self, account_id: int, account_max: int) -> int:
        """Slots the account can still take: max(0, account_max - live_count)."""
        return max(0, account_max - self.live_count(account_id))


def by_budget(rows: Iterable[tuple[int, int, T]]) -> dict[tuple[int, int], list[T]]:
    """(account, campaign, item) rows as the items of each (account, campaign) budget, so that each budget's
    slots are released or renewed in one call."""
    grouped: dict[tuple[int, int], list[T]] = {}
    for account_id, campaign_id, item in rows:
        grouped.setdefault((account_id, campaign_id), []).append(item)
    return grouped
