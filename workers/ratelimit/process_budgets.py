"""One Budgets (Redis limiters) per process, on the configured Redis, rebuilt from Postgres if Redis loses
its state (workers.ratelimit.recovery)."""

from __future__ import annotations

import os
import threading

import redis

from campaigns.config import get_settings
from workers.pg import get_pool
from workers.ratelimit import AimdPolicy, Budgets
from workers.ratelimit.postgres_state import PostgresBudgetState

_lock = threading.Lock()
_budgets: tuple[int, Budgets] | None = None


def get_budgets() -> Budgets:
    global _budgets
    with _lock:
        if _budgets is None or _budgets[0] != os.getpid():
            client = redis.Redis.from_url(
                get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
            )
            state = PostgresBudgetState(lambda: get_pool().connection())
            settings = get_settings()
            aimd = AimdPolicy(factor=settings.aimd_factor, confirm_s=settings.aimd_confirm_s)
            _budgets = (os.getpid(), Budgets(client, aimd=aimd, state=state))
        return _budgets[1]
