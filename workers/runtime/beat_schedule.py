"""Beat's schedule and lock in Redis (celery-redbeat) under the deployment's prefix: two deployments sharing
a Redis each run their own beat, and a second beat of one deployment waits for the first's lock instead of
sending every periodic task twice.

The lock is renewed on every tick, and beat ticks at least once a second (the dispatcher and call-limit
entries run every second), so LOCK_TIMEOUT_S leaves many missed ticks of margin before it lapses; a beat
that stopped (crash, SIGKILL) frees it within LOCK_TIMEOUT_S, and a waiting beat tries again every
MAX_INTERVAL_S. A beat whose lock was taken from it fails its next renewal and exits rather than send twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis
from redbeat.decoder import RedBeatJSONDecoder

from campaigns.config import get_settings
from workers import redis_keys

LOCK_TIMEOUT_S = 10
MAX_INTERVAL_S = 2.0
HEALTHY_WITHIN_S = 30.0  # `dialer beat --check`: the dispatcher entry fired this recently
HEALTH_ENTRY = "dispatch"  # the every-second entry the check reads


def redbeat_settings() -> dict[str, Any]:
    """Celery settings: beat keeps its schedule and lock in Redis under the deployment's prefix."""
    return {
        "beat_scheduler": "redbeat.RedBeatScheduler",
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

