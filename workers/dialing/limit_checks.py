"""The first call-limit check of a request just sent, where the account's carrier is not told a limit the
campaign sets (adapter.limits_the_dialer_enforces: VoIPbin ring and time, Vobiz under hangup_on_ring "call"
the ring). Its owner, workers.housekeeping.call_limits, takes the request from the sorted set at its score and
ends the calls past their limit; this only puts the request there: one ZADD, no database round trip."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import redis

from campaigns.call_options import ring_timeout
from workers import redis_keys
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials


def schedule_first_check(client: redis.Redis, adapter: ProviderAdapter, account: AccountCredentials,
                         batch_id: uuid.UUID, options: Mapping[str, Any], sent_epoch: float) -> bool:
    """Look at the request's calls at its ring timeout after the send (sooner if already scheduled so): no
    call of it can reach a limit before. False, and nothing scheduled, where the carrier enforces them all."""
    if not adapter.limits_the_dialer_enforces(account):
        return False
    client.zadd(redis_keys.call_limit_checks(), {str(batch_id): sent_epoch + ring_timeout(options)}, lt=True)
    return True
