"""A short Redis lock held for a block: one holder at a time, freed by its lease if the holder dies, and
released only while still its holder's (a holder that outlived its lease leaves the next one's lock
alone). Beat's passes (workers.runtime.tasks.single_flight) and the dispatcher's per-account turn
(workers.dispatch.dispatcher.account_turn) are both this."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


@contextmanager
def held_lock(client: redis.Redis, key: str, lease_s: float, *, wait_s: float = 0.0,
              poll_s: float = 0.1) -> Iterator[bool]:
    """Yield True while holding `key` (taken within `wait_s`), or False, holding nothing, when another holder
    kept it."""
    lock = client.lock(key, timeout=lease_s, sleep=poll_s, blocking=wait_s > 0,
                       blocking_timeout=wait_s or None)
    if not lock.acquire():
        yield False
        return
    try:
        yield True
    finally:
        try:
            lock.release()
        except LockError:  # the lease ran out mid-block: the lock is another holder's now, leave it
            log.warning("%s outlived its %.1f s lease; the lock is another holder's now", key, lease_s)
