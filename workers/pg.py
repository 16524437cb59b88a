"""One psycopg connection pool per worker process, opened lazily (after Celery forks).

Connections are in autocommit: each single-statement write commits at once (one round trip), and
multi-statement changes use `with conn.transaction()`.

A Postgres restart ends every pooled connection, and psycopg_pool learns it only by using one. So that
work goes on within a second of Postgres accepting connections again (docs/RELIABILITY.md, "Postgres
outage"):
- each connection is checked as it leaves the pool (`_alive`): free while its socket has nothing to read,
  as an idle connection's never has until the server ends it (a termination notice, or end of file); then
  one round trip decides, and a dead one sweeps out the other idle ones at once (`pool.check()`): one
  request would otherwise walk through them with psycopg_pool's growing sleeps between failed checks;
- a failed reconnection is retried every RECONNECT_EVERY_S for as long as it fails, instead of with
  psycopg_pool's doubling backoff (1, 2, 4, 8 s...), which came back up to the outage's own length late;
- `on_fresh_connection` runs what must happen as soon as Postgres accepts again (a failed dial chunk
  handing back its claims) on a connection of its own, retried with a short backoff.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from campaigns.config import get_settings
from campaigns.db import SESSION_OPTIONS, connect, unavailable
from campaigns.errors import ServiceUnavailable

T = TypeVar("T")

RECONNECT_EVERY_S = 0.5  # while Postgres refuses connections, each pool tries again this often
FRESH_RETRY_FIRST_S = 0.1  # on_fresh_connection's backoff: first wait, doubling up to the cap
FRESH_RETRY_CAP_S = 0.5

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None


def _quiet(conn: psycopg.Connection) -> bool:
    """Nothing to read on an idle connection's socket: the server has not ended it (no round trip)."""
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return not poller.poll(0)


class _Alive:
    """The pool's check of a connection it is about to hand out: raises if the connection is dead. Built
    before its pool (which takes it as an argument), then told the pool."""

    pool: ConnectionPool | None = None

    def __call__(self, conn: psycopg.Connection) -> None:
        if _quiet(conn):
            return
        try:  # something arrived while idle: a parameter report is harmless, an ended session is not
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            if self.pool is not None:
                self.pool.check()  # a restart ended them all: test the other idle ones now, replace the dead
            raise


def _keep_trying(pool: ConnectionPool) -> None:
    """psycopg_pool gave up a reconnection after RECONNECT_EVERY_S: start another at once (pool.check grows
    the pool again), so reconnections go on at that pace, never more connections than before."""
    pool.check()


def get_pool(max_size: int = 16) -> ConnectionPool:
    """The process's pool; a forked child opens its own instead of sharing the parent's sockets."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            url = get_settings().psycopg_url
            alive = _Alive()
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                open=False,
                timeout=30,
                check=alive,
                reconnect_timeout=RECONNECT_EVERY_S,
                reconnect_failed=_keep_trying,
                kwargs={"connect_timeout": 5, "autocommit": True, "options": SESSION_OPTIONS},
            )
            alive.pool = pool
            try:
                pool.open(wait=True, timeout=10)
            except Exception as exc:
                pool.close(timeout=0)  # its reconnection threads would go on trying
                raise unavailable(url, exc) from exc
            _pool, _pool_pid = pool, os.getpid()
        return _pool


def close_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool = None


def on_fresh_connection(
    work: Callable[[psycopg.Connection], T],
    *,
    within_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`work` on a new autocommit connection of its own (not the pool's, which may still be reconnecting),
    tried again after 0.1, 0.2, 0.4, then every 0.5 s while Postgres refuses or drops the connection, for up
    to `within_s`; then the last error is raised (ServiceUnavailable or psycopg.OperationalError)."""
    deadline = clock() + within_s
    wait = FRESH_RETRY_FIRST_S
    while True:
        try:
            with connect(autocommit=True) as conn:
                return work(conn)
        except (ServiceUnavailable, psycopg.OperationalError):
            if clock() + wait > deadline:
                raise
        sleep(wait)
        wait = min(wait * 2, FRESH_RETRY_CAP_S)
