"""Celery task metrics under celery-exporter's names and labels, counted from Celery's own signals in the
process where each thing happens, and served by that process's /metrics (a worker's:
workers.metrics.worker_server), so Prometheus needs neither celery-exporter nor Flower. Dashboards and
alerts written for celery-exporter (its celery-mixin) read them unchanged.

- celery_task_{sent,received,started,succeeded,failed,retried}_total {name, hostname, queue_name}; failed
  also has `exception` (its class name). `sent` counts the messages this process published (a worker's
  dispatcher sends dial chunks; a retry is published again by the worker).
- celery_task_runtime {name, hostname, queue_name}: a histogram of successful tasks' run time, seconds.
- celery_worker_up {hostname}: 1 from worker_ready to worker_shutdown.

`hostname` is the host part of the worker's node name, as celery-exporter gives it; several workers on one
host are told apart by their scrape target.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from celery.signals import (
    after_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_retry,
    task_success,
    worker_ready,
    worker_shutdown,
)
from prometheus_client import Counter, Gauge, Histogram

LABELS = ["name", "hostname", "queue_name"]
SENT = Counter("celery_task_sent", "Task messages this process published", LABELS)
RECEIVED = Counter("celery_task_received", "Tasks the worker received", LABELS)
STARTED = Counter("celery_task_started", "Tasks the worker started to run", LABELS)
SUCCEEDED = Counter("celery_task_succeeded", "Tasks that ran to success", LABELS)
FAILED = Counter("celery_task_failed", "Tasks that raised (not a retry)", [*LABELS, "exception"])
RETRIED = Counter("celery_task_retried", "Tasks that failed and will be retried", LABELS)
RUNTIME = Histogram("celery_task_runtime", "Run time of tasks that succeeded, seconds", LABELS,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
WORKER_UP = Gauge("celery_worker_up", "1 while this worker is up", ["hostname"], multiprocess_mode="max")

_started_at: dict[str, float] = {}  # task id -> monotonic start, while the task runs
_started_lock = threading.Lock()


def host_of(node: str | None) -> str:
    """The host part of a Celery node name (`dialer-12@host` -> `host`); this host's name if there is none."""
    return (node or "").rpartition("@")[2] or socket.gethostname()


def _queue_of(delivery_info: dict[str, Any] | None) -> str:
    return str((delivery_info or {}).get("routing_key") or "celery")


def _labels_of(task: Any) -> dict[str, str]:
    request = task.request
    return {"name": str(task.name), "hostname": host_of(getattr(request, "hostname", None)),
            "queue_name": _queue_of(getattr(request, "delivery_info", None))}


@after_task_publish.connect
def _count_sent(sender: str | None = None, headers: dict[str, Any] | None = None,
                routing_key: str | None = None, **_: Any) -> None:
    name = sender or (headers or {}).get("task") or "unknown"
    SENT.labels(str(name), host_of(None), routing_key or "celery").inc()


@task_received.connect
def _count_received(request: Any = None, **_: Any) -> None:
    labels = {"name": str(request.name), "hostname": host_of(request.hostname),
              "queue_name": _queue_of(request.delivery_info)}
    RECEIVED.labels(**labels).inc()
    # The task's other series exist from its first receipt, at 0, so a rate over them is defined.
    for counter in (STARTED, SUCCEEDED, RETRIED):
        counter.labels(**labels)


@task_prerun.connect
def _count_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    STARTED.labels(**_labels_of(task)).inc()
    with _started_lock:
        _started_at[str(task_id)] = time.monotonic()


@task_success.connect
def _count_succeeded(sender: Any = None, **_: Any) -> None:
    labels = _labels_of(sender)
    SUCCEEDED.labels(**labels).inc()
    with _started_lock:
        started = _started_at.get(str(sender.request.id))
    if started is not None:
        RUNTIME.labels(**labels).observe(time.monotonic() - started)


@task_failure.connect
def _count_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    FAILED.labels(**_labels_of(sender), exception=type(exception).__name__ if exception else "").inc()


@task_retry.connect
def _count_retried(sender: Any = None, **_: Any) -> None:
    RETRIED.labels(**_labels_of(sender)).inc()


@task_postrun.connect
def _forget_start(task_id: str | None = None, **_: Any) -> None:
    with _started_lock:
        _started_at.pop(str(task_id), None)


@worker_ready.connect
def _worker_up(sender: Any = None, **_: Any) -> None:
    WORKER_UP.labels(host_of(getattr(sender, "hostname", None))).set(1)


@worker_shutdown.connect
def _worker_down(sender: Any = None, **_: Any) -> None:
    WORKER_UP.labels(host_of(getattr(sender, "hostname", None))).set(0)
