"""The dialer's own processes on this machine, started and stopped together: the API (uvicorn), Celery
workers and beat. Used by `dialer demo`, the end-to-end tests and the benchmarks.

Every process inherits the caller's DIALER_* environment, plus DIALER_PUBLIC_URL pointing at the API.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from campaigns.config import get_settings
from workers.queues import ALL_QUEUES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalStack:
    api_url: str
    workdir: Path
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, *argv], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self, port: int) -> None:
        self.others.append(
            self._spawn(
                "api",
                [
                    "-m",
                    "uvicorn",
                    "workers.entrypoints.api.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
            )
        )
        wait_http(f"{self.api_url}/health")

    def start_worker(self, index: int, threads: int = 8) -> subprocess.Popen[bytes]:
        proc = self._spawn(
            f"worker{index}",
            [
                "-m",
                "celery",
                "-A",
                "workers.runtime.celery_app",
                "worker",
                "-Q",
                ",".join(ALL_QUEUES),
                "-P",
                "threads",
                "-c",
                str(threads),
                "-n",
                f"w{index}-{os.getpid()}@%h",
                # INFO is lifecycle lines only (ready, the metrics port, shutdown; per-task lines are DEBUG):
                # what someone reading a stack's logs needs, and where tests find each worker's metrics port.
                "-l",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
        )
        self.workers.append(proc)
        return proc

    def start_beat(self) -> None:
        self.others.append(
            self._spawn(
                "beat",
                [
                    "-m",
                    "celery",
                    "-A",
                    "workers.runtime.celery_app",
                    "beat",
                    "-l",
                    "WARNING",
                ],  # schedule and lock in Redis under the stack's DIALER_REDIS_PREFIX (beat_schedule)
            )
        )

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no chance to finish or acknowledge anything (the crash case)."""
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        for proc in self.workers + self.others:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers + self.others:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@contextmanager
def local_stack(
    *, workers: int = 4, threads: int = 8, beat: bool = True, api: bool = True, api_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalStack]:
    """Start the processes; on exit stop them all, whatever happened. `extra_env`: settings for the stack's
    processes only (a demo's short circuit cool-down), never this process's."""
    port = api_port or free_port()
    public_url = f"http://127.0.0.1:{port}"
    # This process builds callback URLs too (tests, demo): it must agree with the workers.
    os.environ["DIALER_PUBLIC_URL"] = public_url
    get_settings.cache_clear()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    stack = LocalStack(api_url=public_url, workdir=Path(tempfile.mkdtemp(prefix="dialer-stack-")), env=env)
    try:
        if api:
            stack.start_api(port)
        for index in range(workers):
            stack.start_worker(index, threads)
        if beat:
            stack.start_beat()
        yield stack
    finally:
        stack.stop()
