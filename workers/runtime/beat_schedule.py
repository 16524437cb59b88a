"""Beat's schedule and lock in Redis (celery-redbeat) under the deployment's prefix: two deployments sharing
a Redis each run their own beat, and a second beat of one deployment waits for the first's lock instead of
sending every periodic task twice.

The lock is renewed on every tick, and beat ticks at least once a second (the dispatcher and call-limit
entries run every second), so LOCK_TIMEOUT_S leaves many missed ticks of margin before it lapses; a beat
that stopped (crash, SIGKILL) frees it within LOCK_TIMEOUT_S, and a waiting beat tries again every
MAX_INTERVAL_S. A beat whose lock was taken from it fails its next renewal and exits rather than send twice.

Redis can lose its state (FLUSHALL, a restart without persistence): the schedule, its entries and the lock go
with it. redbeat alone then fails its renewal and exits, and a restarted beat or none would leave every
campaign without its dispatcher tick. DialerBeatScheduler instead takes the vacant lock back (unless another
beat took it first: then it exits as before) and installs its static entries again, so dialing resumes
within a tick or two of Redis coming back.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis
from redbeat.decoder import RedBeatJSONDecoder
from redbeat.schedulers import RedBeatScheduler, get_redis
from redis.exceptions import LockNotOwnedError

from campaigns.config import get_settings
from workers import redis_keys

LOCK_TIMEOUT_S = 10
MAX_INTERVAL_S = 2.0
HEALTHY_WITHIN_S = 30.0  # `dialer beat --check`: the dispatcher entry fired this recently
HEALTH_ENTRY = "dispatch"  # the every-second entry the check reads


log = logging.getLogger(__name__)


class DialerBeatScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat has no type hints
    """redbeat's scheduler, which survives Redis losing its state (see the module's docstring)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return self._tick(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis is down or restarting: wait for it rather than die (the lock lapses after LOCK_TIMEOUT_S
            # if this lasts, and then whichever beat finds it vacant first takes it).
            log.warning("beat: Redis is unreachable (%s); trying again in %.0f s", exc, MAX_INTERVAL_S)
            return MAX_INTERVAL_S

    def _tick(self, *args: Any, **kwargs: Any) -> float:
        lock_key: str | None = self.lock_key  # type: ignore[has-type]  # redbeat sets it untyped
        if lock_key and self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
            except LockNotOwnedError:
                self._take_back_a_vacant_lock()
        client = get_redis(self.app)
        if not client.exists(self.app.redbeat_conf.schedule_key):
            log.warning("beat: the schedule is gone from Redis (state lost); installing its entries again")
            self.setup_schedule()
        self.lock_key = None  # renewed above: the parent's tick must not renew it again
        try:
            interval: float = super().tick(*args, **kwargs)
        finally:
            self.lock_key = lock_key
        return interval

    def _take_back_a_vacant_lock(self) -> None:
        """The renewal failed: if no beat holds the lock, Redis lost it and this beat takes it back; if
        another beat holds it, this one must stop sending (the exception ends it, as redbeat would)."""
        if self.lock.acquire(blocking=False):
            log.warning("beat: the lock was gone from Redis (state lost); taken back")
            return
        raise LockNotOwnedError("another beat holds the lock; this one stops")


def redbeat_settings() -> dict[str, Any]:
    """Celery settings: beat keeps its schedule and lock in Redis under the deployment's prefix."""
    return {
        "beat_scheduler": "workers.runtime.beat_schedule:DialerBeatScheduler",
        "redbeat_redis_url": get_settings().redis_url,
        "redbeat_redis_options": {},  # said, so redbeat does not borrow the broker's transport options
        "redbeat_key_prefix": redis_keys.beat_prefix(),
        "redbeat_lock_key": redis_keys.beat_lock(),
        "redbeat_lock_timeout": LOCK_TIMEOUT_S,
        "beat_max_loop_interval": MAX_INTERVAL_S,
    }


def beat_health(client: redis.Redis, now: datetime | None = None) -> str | None:
    """None when this deployment's beat holds its lock and fired its dispatcher entry within HEALTHY_WITHIN_S;
    otherwise why not, in one line."""
    if not client.exists(redis_keys.beat_lock()):
        return f"no beat holds {redis_keys.beat_lock()}"
    # redbeat keeps each entry in a hash at key prefix + name; its `meta` field holds when it last fired.
    meta = client.hget(redis_keys.beat_prefix() + HEALTH_ENTRY, "meta")
    last_run = json.loads(meta, cls=RedBeatJSONDecoder).get("last_run_at") if meta else None
    if last_run is None:
        return f"beat holds its lock but has not fired {HEALTH_ENTRY!r} yet"
    age = ((now or datetime.now(UTC)) - last_run).total_seconds()
    if age > HEALTHY_WITHIN_S:
        return f"beat last fired {HEALTH_ENTRY!r} {age:.0f} s ago"
    return None

