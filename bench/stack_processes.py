"""The processes of a benchmark's stack, by role, for bench.process_cpu: the workers together, the API,
beat, Postgres, Redis and the carrier (the simulator).

Postgres is the backends of the bench's own database plus the server's background processes (checkpointer,
WAL writer, background writer, autovacuum launcher) and the postmaster: the WAL the dialer's commits write is
its cost, though on a shared server those processes also serve other databases. Its pids are looked up
through the admin database, so the look-up's own backend is not counted. Redis is the server's process
(INFO's process_id); it must be on this machine, as the benchmarks' is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import redis

from bench.process_cpu import read_stat

# The dialer's own processes, the ones the "CPU per call" target counts; the carrier is apart.
DIALER_GROUPS = ("workers", "api", "beat", "postgres", "redis")


def stack_roles(stack: Any) -> dict[str, list[int]]:
    """workers/api/beat pids of a workers.entrypoints.local_stack.LocalStack."""
    roles: dict[str, list[int]] = {"workers": [p.pid for p in stack.workers], "api": [], "beat": []}
    for proc in stack.others:
        argv = " ".join(str(a) for a in proc.args) if isinstance(proc.args, list) else str(proc.args)
        roles["api" if "uvicorn" in argv else "beat" if " beat" in argv else "workers"].append(proc.pid)
    return roles


class PostgresPids:
    """The pids serving one database, asked of pg_stat_activity through the admin database (one connection
    kept; reopened after a failure, e.g. a Postgres restart)."""

    def __init__(self, psycopg_url: str) -> None:
        self.database = psycopg_url.rsplit("/", 1)[1].split("?", 1)[0]
        self.admin_url = psycopg_url.rsplit("/", 1)[0] + "/postgres"
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self) -> list[int]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=2)
            rows = self._conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE (datname = %s OR datname IS NULL)"
                " AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        except psycopg.Error:
            self.close()
            raise
        pids = [int(pid) for (pid,) in rows]
        postmaster = next((s.ppid for s in map(read_stat, pids) if s is not None), None)
        return pids + ([postmaster] if postmaster else [])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def redis_pid(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def stack_groups(stack: Any, carrier_pid: int, psycopg_url: str, redis_url: str,
                 ) -> Callable[[], Mapping[str, list[int]]]:
    """The bench's groups: its stack's roles, Postgres's pids for its database (looked up at each sample),
    Redis and the carrier."""
    roles = stack_roles(stack)
    postgres = PostgresPids(psycopg_url)
    redis_server = redis_pid(redis_url)

    def groups() -> Mapping[str, list[int]]:
        return {**roles, "postgres": postgres(), "redis": [redis_server], "carrier": [carrier_pid]}

    return groups
