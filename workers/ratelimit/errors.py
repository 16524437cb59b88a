"""Errors of the Redis budgets, and the one place redis-py's connection errors become ours.

LimiterError
├── LimiterUnavailable   Redis could not be reached: no budget can be checked, so nothing may be dialled
├── BudgetsLost          Redis answers but lost its state (no budgets epoch): rebuild before booking
└── BulkTooLarge         a bulk asks for more tokens than one second of the (adaptive) rate holds
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


class LimiterError(Exception):
    """Base of every error raised by workers.ratelimit."""


class LimiterUnavailable(LimiterError):
    """Redis, which holds every global budget, could not be reached."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(
            f"the CPS/concurrency budgets live in Redis at {url}, which is unavailable ({cause}); "
            f"start it with: {START_REDIS}"
        )
        self.url = url


class BudgetsLost(LimiterError):
    """Redis has no budgets epoch: it lost the recent sends, live calls and pauses (restart, FLUSHALL)."""

    def __init__(self) -> None:
        super().__init__("Redis lost the budgets' state (no epoch key); they must be rebuilt before sending")


class BulkTooLarge(LimiterError, ValueError):
    """A bulk of n tokens can never fit one second of the current rate; split it into max_tokens."""

    def __init__(self, n_tokens: int, max_tokens: int) -> None:
        super().__init__(f"a bulk of {n_tokens} tokens exceeds the current budget of {max_tokens} per second")
        self.n_tokens = n_tokens
        self.max_tokens = max_tokens


def redis_url(client: redis.Redis) -> str:
    """The URL of the server a client talks to, for error messages (no password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


@contextmanager
def redis_errors_translated(client: redis.Redis) -> Iterator[None]:
    """Re-raise redis-py's connection and timeout errors as LimiterUnavailable."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise LimiterUnavailable(redis_url(client), exc) from exc
