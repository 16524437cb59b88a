"""Private Redis and Postgres servers for tests that make them fail (flush, restart, stop): each on a free
port in a temp directory, so the machine's shared servers, which other test sessions use, never notice.

    with private_redis() as redis_server:
        redis_server.flushall(); redis_server.restart()
    with private_postgres() as pg:          # initdb + pg_ctl, as the `postgres` OS user when run as root
        pg.stop(); pg.start()

`pointed_at(...)` points this process's settings (and so every process a test starts) at them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from workers.entrypoints.local_stack import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivateRedis:
    """redis-server without persistence, so a restart comes back empty (the failure being tested)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """SIGKILL: everything in memory is gone, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def flushall(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    workdir = Path(tempfile.mkdtemp(prefix="private-redis-"))
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: run them as the `postgres` OS user then."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class PrivatePostgres:
    """A throwaway cluster (trust auth, user postgres) on a free port; stop() and start() keep its data."""

    def __init__(self, workdir: Path) -> None:
        self.datadir = workdir / "data"
        self.logfile = workdir / "postgres.log"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                     "--auth=trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                                     "-o", options, "-w", "start"]), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                                     "stop"]), check=True, capture_output=True)

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    workdir = Path(tempfile.mkdtemp(prefix="private-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    cluster = PrivatePostgres(workdir)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def dialer_env(values: dict[str, str]) -> Iterator[None]:
    """These DIALER_* variables for this process and every process it starts meanwhile; settings re-read
    on entry and on exit."""
    from campaigns.config import get_settings

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@contextmanager
def pointed_at(*, redis_url: str | None = None, database_url: str | None = None) -> Iterator[None]:
    """DIALER_REDIS_URL / DIALER_DATABASE_URL for this process and every process it starts meanwhile."""
    values = {"DIALER_REDIS_URL": redis_url, "DIALER_DATABASE_URL": database_url}
    with dialer_env({k: v for k, v in values.items() if v}):
        yield
