"""One psycopg connection pool per worker process, opened lazily (after Celery forks).

Connections are in autocommit: each single-statement write commits at once (one round trip), and
multi-statement changes use `with conn.transaction()`.
"""

from __future__ import annotations

import os
import threading

from psycopg_pool import ConnectionPool

from campaigns.config import get_settings
from campaigns.db import SESSION_OPTIONS, unavailable

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None


def get_pool(max_size: int = 16) -> ConnectionPool:
    """The process's pool; a forked child opens its own instead of sharing the parent's sockets."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            url = get_settings().psycopg_url
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                open=False,
                timeout=30,
                kwargs={"connect_timeout": 5, "autocommit": True, "options": SESSION_OPTIONS},
            )
            try:
                pool.open(wait=True, timeout=10)
            except Exception as exc:
                raise unavailable(url, exc) from exc
            _pool, _pool_pid = pool, os.getpid()
        return _pool


def close_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool = None
