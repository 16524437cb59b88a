"""`dialer worker|beat|api|flower`: thin wrappers starting the processes with the right options."""

from __future__ import annotations

import os
import sys

import redis
import typer

from campaigns.config import get_settings
from campaigns.db import connect, require_schema
from campaigns.errors import ServiceUnavailable
from workers.entrypoints.flower_auth import flower_basic_auth
from workers.queues import ALL_QUEUES
from workers.ratelimit.errors import START_REDIS
from workers.runtime.beat_schedule import beat_health


def preflight() -> None:
    """Postgres and Redis reachable and the schema in place, or one clear line naming the URL and the fix
    (not a retry loop of connection tracebacks from Celery or uvicorn)."""

    with connect() as conn:
        require_schema(conn)  # before `dialer db init`: one line with the fix, not a traceback per sweep
    url = get_settings().redis_url
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Redis is not reachable at {url} ({exc}); start it with: {START_REDIS}"
        ) from exc


def _exec(argv: list[str]) -> None:
    """Replace this process (signals reach the real server directly)."""
    os.execvp(argv[0], argv)


def worker(
    queues: str = typer.Option(",".join(ALL_QUEUES), help="Queues to consume"),
    threads: int = typer.Option(
        16,
        help="Threads per process: a dial waiting for its send time is a sleeping "
        "thread, so the process keeps serving other chunks",
    ),
    name: str = typer.Option(None, help="Celery node name (default: dialer-<pid>@host)"),
    loglevel: str = typer.Option(
        "WARNING", help="WARNING: problems only; INFO: also lifecycle lines; DEBUG: also a line per task"
    ),
) -> None:
    """Start a Celery worker (threads pool)."""
    preflight()
    node = name or f"dialer-{os.getpid()}@%h"
    _exec(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.runtime.celery_app",
            "worker",
            "-Q",
            queues,
            "-P",
            "threads",
            "-c",
            str(threads),
            "-n",
            node,
            "-l",
            loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )


def beat(
    loglevel: str = typer.Option(
        "WARNING", help="WARNING: problems only; INFO: also lifecycle lines; DEBUG: also a line per send"
    ),
    check: bool = typer.Option(
        False, "--check", help="Health check: exit 0 if this deployment's beat holds its lock and ticks"
    ),
) -> None:
    """Start Celery beat (dispatcher every second, reaper, results safety net). Its schedule and lock live in
    Redis under DIALER_REDIS_PREFIX: a second beat of the same deployment waits for the first one's lock."""
    if check:
        _check_beat()
        return
    preflight()
    _exec([sys.executable, "-m", "celery", "-A", "workers.runtime.celery_app", "beat", "-l", loglevel])


def _check_beat() -> None:
    client = redis.Redis.from_url(get_settings().redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        problem = beat_health(client)
    except redis.RedisError as exc:
        problem = f"Redis is not reachable: {exc}"
    finally:
        client.close()
    if problem:
        typer.echo(f"beat unhealthy: {problem}", err=True)
        raise typer.Exit(1)
    typer.echo("beat healthy")


def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8000, help="Port to listen on"),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
) -> None:
    """Start the HTTP API and callback receiver (uvicorn)."""
    preflight()
    _exec(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "workers.entrypoints.api.main:app",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ]
    )


def flower(
    port: int = typer.Option(5555, help="Port of Flower's web UI"),
    address: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 in a container)"),
) -> None:
    """Start Flower to watch workers and tasks (basic auth from DIALER_FLOWER_AUTH; required outside
    development). Search `campaign=ID` to find a campaign's dial chunks."""

    settings = get_settings()
    auth = flower_basic_auth(settings.environment, settings.flower_auth)
    preflight()
    if auth:
        # A write, handed to the Flower exec'd below through its own variable, never argv (visible in `ps`).
        os.environ["FLOWER_BASIC_AUTH"] = auth
    _exec([sys.executable, "-m", "celery", "-A", "workers.runtime.celery_app", "flower", f"--port={port}",
           f"--address={address}"])
