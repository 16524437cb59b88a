"""The first call-limit check of a request just sent, where the carrier takes no ring timeout or time limit
(VoIPbin: traits.api.dialer_ends_calls). Its owner, workers.housekeeping.call_limits, takes the request from
the sorted set at its score and ends the calls past their limit; this only puts the request there."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import redis

from campaigns.call_options import ring_timeout
from workers import redis_keys


def schedule_first_check(client: redis.Redis, batch_id: uuid.UUID, options: Mapping[str, Any],
                         sent_epoch: float) -> None:
    """Look at the request's calls at its ring timeout after the send (sooner if already scheduled so)."""
    client.zadd(redis_keys.call_limit_checks(), {str(batch_id): sent_epoch + ring_timeout(options)}, lt=True)
