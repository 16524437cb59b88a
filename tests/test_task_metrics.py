"""Celery task metrics under celery-exporter's names (issue 22), served by the worker's own /metrics: a real
worker runs a task that succeeds, one that fails, one that retries once and one of the dialer's own tasks,
and its exporter (behind DIALER_METRICS_TOKEN) counts each as celery-exporter would."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from campaigns.config import get_settings
from tests.polling import wait_for
from workers.entrypoints.local_stack import free_port
from workers.runtime.celery_app import make_app

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
HOST = socket.gethostname()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


@pytest.fixture()
def worker(database_url: str, redis_client: redis.Redis,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    prefix = f"{os.environ['DIALER_REDIS_PREFIX']}-taskmetrics"
    token = secrets.token_urlsafe(24)
    port = free_port()
    env = {**os.environ, "DIALER_REDIS_PREFIX": prefix, "DIALER_METRICS_TOKEN": token,
           "DIALER_WORKER_METRICS_PORT": str(port), "DIALER_WORKER_METRICS_HOST": "127.0.0.1",
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    log = Path(tempfile.mkdtemp(prefix="dialer-taskmetrics-")) / "worker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.celery_probe_tasks", "worker",
             "-Q", "dial,housekeeping", "-P", "threads", "-c", "4", "-n", f"probe-{os.getpid()}@{HOST}",
             "--without-mingle", "--without-gossip", "-l", "WARNING"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    monkeypatch.setenv("DIALER_REDIS_PREFIX", prefix)
    get_settings.cache_clear()
    app = make_app()  # this test's sender, on the worker's prefix
    try:
        yield {"app": app, "url": f"http://127.0.0.1:{port}/metrics", "token": token, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        monkeypatch.undo()
        get_settings.cache_clear()
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(key)


def test_the_worker_exports_celery_exporter_task_metrics(worker: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {worker['token']}"}

    def scrape() -> str | None:
        try:
            answer = httpx.get(worker["url"], headers=headers, timeout=2)
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None

    def up() -> bool:
        text = scrape()
        return text is not None and _value(_samples(text), "celery_worker_up", hostname=HOST) == 1

    wait_for(up, 60, what=f"the worker's exporter saying it is up ({worker['log']})")
    assert httpx.get(worker["url"], timeout=2).status_code == 401, "a scrape without the token is refused"

    app = worker["app"]
    app.send_task("probe.succeed", queue="dial")
    app.send_task("probe.fail", queue="dial")
    app.send_task("probe.retry", queue="dial")
    app.send_task("workers.tasks.enforce_call_limits", queue="housekeeping")

    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        text = scrape()
        if text is None:
            return None
        samples = _samples(text)
        done = (_value(samples, "celery_task_succeeded_total", name="probe.retry", hostname=HOST,
                       queue_name="dial") == 1
                and _value(samples, "celery_task_succeeded_total", name="workers.tasks.enforce_call_limits",
                           hostname=HOST, queue_name="housekeeping") == 1
                and _value(samples, "celery_task_failed_total", name="probe.fail", hostname=HOST,
                           queue_name="dial", exception="ProbeFailure") == 1)
        return samples if done else None

    samples = wait_for(counted, 60, what=f"the tasks counted ({worker['log']})")
    dial = {"hostname": HOST, "queue_name": "dial"}
    for name, received, started, succeeded, retried in (
        ("probe.succeed", 1, 1, 1, 0),
        ("probe.fail", 1, 1, 0, 0),
        ("probe.retry", 2, 2, 1, 1),  # run, retried (published again by the worker), run again
    ):
        assert _value(samples, "celery_task_received_total", name=name, **dial) == received, name
        assert _value(samples, "celery_task_started_total", name=name, **dial) == started, name
        assert _value(samples, "celery_task_succeeded_total", name=name, **dial) == succeeded, name
        assert _value(samples, "celery_task_retried_total", name=name, **dial) == retried, name
        assert _value(samples, "celery_task_runtime_count", name=name, **dial) == succeeded, name
    assert _value(samples, "celery_task_sent_total", name="probe.retry", **dial) == 1
    assert _value(samples, "celery_task_failed_total", name="probe.succeed", exception="ProbeFailure",
                  **dial) == 0
    own = {"name": "workers.tasks.enforce_call_limits", "hostname": HOST, "queue_name": "housekeeping"}
    assert _value(samples, "celery_task_received_total", **own) == 1
    assert _value(samples, "celery_task_runtime_count", **own) == 1
    assert 0 < _value(samples, "celery_task_runtime_sum", **own) < 60
