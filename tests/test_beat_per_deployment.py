"""One beat per deployment (issue 22): beat's schedule and lock live in Redis under DIALER_REDIS_PREFIX
(celery-redbeat). Two deployments sharing a Redis run their beats side by side, each firing its own schedule
once per period into its own queues; a second beat of the same deployment waits for the lock and fires
nothing. Real `dialer beat` processes, real Redis; no worker runs, so every message beat sent stays in the
queue to be counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.polling import wait_for

pytestmark = pytest.mark.timeout(120)

CALL_LIMITS = "workers.tasks.enforce_call_limits"  # every second
WINDOW_S = 6.0


class Beats:
    def __init__(self, base_prefix: str) -> None:
        self.base = base_prefix
        self.workdir = Path(tempfile.mkdtemp(prefix="dialer-beats-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, prefix: str, **extra_env: str) -> Path:
        log = self.workdir / f"beat-{len(self.procs)}.log"
        env = {**os.environ, "DIALER_REDIS_PREFIX": prefix, "PYTHONUNBUFFERED": "1", **extra_env}
        with open(log, "ab") as out:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "workers.entrypoints.cli", "beat", "--loglevel", "INFO"],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        self.logs.append(log)
        return log

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def beats(database_url: str, redis_client: redis.Redis) -> Iterator[Beats]:
    running = Beats(os.environ["DIALER_REDIS_PREFIX"])
    yield running
    running.stop()
    for key in redis_client.scan_iter(match=f"{running.base}-beat*", count=1000):
        redis_client.delete(key)


def _sent(client: redis.Redis, prefix: str) -> Counter[str]:
    """The tasks beat sent into this deployment's housekeeping queue, by name."""
    raw: list[Any] = client.lrange(f"{prefix}:celery:housekeeping", 0, -1)
    return Counter(json.loads(message)["headers"]["task"] for message in raw)


def test_two_deployments_run_their_own_beats_side_by_side_and_a_second_beat_waits(
        beats: Beats, redis_client: redis.Redis) -> None:
    first, second = f"{beats.base}-beatA", f"{beats.base}-beatB"
    log_a = beats.start(first)
    log_b = beats.start(second, DIALER_PRUNE_OLDER_THAN="30d")
    wait_for(lambda: all(_sent(redis_client, prefix)[CALL_LIMITS] for prefix in (first, second)), 30,
             what="both deployments' beats firing")
    log_a2 = beats.start(first)  # the same deployment again: must wait for the first one's lock
    time.sleep(3.0)  # the duplicate is up (or would be firing) before the window opens

    before = {prefix: _sent(redis_client, prefix) for prefix in (first, second)}
    started = time.monotonic()
    time.sleep(WINDOW_S)
    elapsed = time.monotonic() - started
    after = {prefix: _sent(redis_client, prefix) for prefix in (first, second)}

    for prefix in (first, second):
        fired = after[prefix][CALL_LIMITS] - before[prefix][CALL_LIMITS]
        assert elapsed - 2 <= fired <= elapsed + 2, f"{prefix}: fired {fired} times in {elapsed:.1f} s"
    # Each its own schedule: only the deployment with retention configured has the (daily) prune entry.
    assert redis_client.zscore(f"{second}:beat::schedule", f"{second}:beat:prune") is not None
    assert redis_client.zscore(f"{first}:beat::schedule", f"{first}:beat:prune") is None
    # One lock per deployment, and the duplicate never took the first deployment's.
    assert redis_client.exists(f"{first}:beat:lock") and redis_client.exists(f"{second}:beat:lock")
    assert "Acquired lock" in log_a.read_text() and "Acquired lock" in log_b.read_text()
    assert "Acquired lock" not in log_a2.read_text(), log_a2.read_text()
    assert all(proc.poll() is None for proc in beats.procs), "a beat exited"


def test_the_health_check_follows_the_beat_of_its_own_deployment(beats: Beats,
                                                                redis_client: redis.Redis) -> None:
    prefix = f"{beats.base}-beatC"
    env = {**os.environ, "DIALER_REDIS_PREFIX": prefix}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers.entrypoints.cli", "beat", "--check"], env=env,
                              capture_output=True, text=True, timeout=30)

    assert check().returncode == 1  # no beat yet
    beats.start(prefix)
    wait_for(lambda: check().returncode == 0, 30, what="the beat's health check passing")
    beats.stop()
    assert check().returncode == 1, "a stopped beat's lock was left behind"
