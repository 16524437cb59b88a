"""Budgets that survive Redis losing its state (a restart without persistence, FLUSHALL, a failover to an
empty replica).

Detection: the key `budgets_epoch` is written once the budgets are built in a Redis. The CPS and slot
scripts refuse to book or take anything while it is missing (atomically, in the same script), so no
worker can act on an empty Redis as if nothing had been sent in the last second and no call were live.

Rebuild, by the one process holding the rebuild lock, from Postgres (a BudgetStateStore):
1. a quiet period: every account that sent or booked recently is paused for `quiet_s`, longer than the
   furthest a booking made before the loss can still be sent (MAX_RESERVATION_WAIT_S) plus one budget
   window, so the new second never overlaps the old one's sends;
2. the 429 pauses and lowered AIMD rates, persisted when they were set;
3. the live-call slots, from the open attempts and their leases;
4. the epoch, last: once it exists, everything above is in place.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis

from workers import redis_keys
from workers.ratelimit.errors import redis_errors_translated
from workers.ratelimit.scripts import script

log = logging.getLogger(__name__)

# Bookings are made at most 2 s ahead (workers.dialing.send_booking.MAX_RESERVATION_WAIT_S), a send leaves at
# most 200 ms late (MAX_LATENESS_S) and reaches the carrier within the network's 20 ms more, and it shares a
# window with sends up to a second after that (send_booking.MAX_WINDOW_S). 3.5 s covers all of them.
QUIET_S = 3.5
REBUILD_LOCK_S = 15.0


@dataclass(frozen=True)
class OpenSlot:
    """A live call holding a concurrency slot: its member, lease end (epoch seconds) and capped campaign."""

    account_id: int
    campaign_id: int | None  # None when the campaign has no concurrency cap of its own
    member: str
    lease_until: float


@dataclass
class BudgetSnapshot:
    """What Postgres knows of the budgets' state when Redis lost it."""

    slots: list[OpenSlot] = field(default_factory=list)
    rates: dict[int, float] = field(default_factory=dict)  # account -> lowered adaptive CPS
    pauses: dict[int, float] = field(default_factory=dict)  # account -> Retry-After pause end, epoch s
    active_accounts: set[int] = field(default_factory=set)  # sent or booked recently: need a quiet period
    # Postgres holds no call ever sent and no budget state ever saved: Redis is empty because this is the
    # deployment's first start, not because it lost anything (logged at INFO, not as a loss).
    first_start: bool = False


class BudgetStateStore(Protocol):
    """Where the budgets' slow-changing state is kept outside Redis, and the open calls are read from."""

    def snapshot(self) -> BudgetSnapshot: ...
    def save_rate(self, account_id: int, rate: float | None) -> None: ...
    def save_pause(self, account_id: int, until: float) -> None: ...


class BudgetRecovery:
    """Rebuilds the budgets in a Redis that has no epoch; safe to call from every worker at once."""

    def __init__(
        self, client: redis.Redis, store: BudgetStateStore, *, quiet_s: float = QUIET_S, keep_s: float = 600.0
    ) -> None:
        self._client = client
        self.store = store
        self.quiet_s = quiet_s
        self._keep_ms = int(keep_s * 1000)

    def restore(self) -> bool:
        """Rebuild the budgets if Redis lost them; True once the epoch exists, False while another process
        is rebuilding (try again shortly)."""
        client = self._client
        with redis_errors_translated(client):
            if client.exists(redis_keys.budgets_epoch()):
                return True
            token = uuid.uuid4().hex
            lock = redis_keys.budgets_rebuild_lock()
            if not client.set(lock, token, nx=True, px=int(REBUILD_LOCK_S * 1000)):
                return False
            try:
                if client.exists(redis_keys.budgets_epoch()):
                    return True
                self._rebuild(self.store.snapshot())
                return True
            finally:
                if client.get(lock) == token.encode():
                    client.delete(lock)

    def _rebuild(self, snap: BudgetSnapshot) -> None:
        client = self._client
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        pause = script(client, "pause")
        for account_id in snap.active_accounts | set(snap.pauses):
            hold = max(self.quiet_s if account_id in snap.active_accounts else 0.0,
                       snap.pauses.get(account_id, 0.0) - now)
            if hold > 0:
                pause(keys=[redis_keys.account_pause(account_id)], args=[hold])
        now_us = str(seconds * 1_000_000 + micros)
        for account_id, rate in snap.rates.items():
            key = redis_keys.account_rate(account_id)
            # A restored rate starts a fresh cooldown and recovery interval, as if just lowered.
            client.hset(key, mapping={"rate": repr(float(rate)), "dec_us": now_us, "rec_us": now_us})
            client.pexpire(key, self._keep_ms)
        by_key: dict[str, dict[str, float]] = {}
        for slot in snap.slots:
            keys = [redis_keys.account_slots(slot.account_id)]
            if slot.campaign_id is not None:
                keys.append(redis_keys.campaign_slots(slot.campaign_id))
            for key in keys:
                by_key.setdefault(key, {})[slot.member] = slot.lease_until
        for key, members in by_key.items():
            client.zadd(key, members)
            client.pexpireat(key, int((max(members.values()) + 1) * 1000))
        client.set(redis_keys.budgets_epoch(), f"{seconds}.{micros:06d}:{uuid.uuid4().hex}")
        if snap.first_start:
            log.info("budgets set up in Redis for the first time (Postgres has no call sent yet)")
            return
        log.warning(
            "Redis had lost the budgets: rebuilt %d live-call slots, %d lowered rates, %d pauses; "
            "%d accounts quiet for %.1f s",
            len(snap.slots), len(snap.rates), len(snap.pauses), len(snap.active_accounts), self.quiet_s,
        )
