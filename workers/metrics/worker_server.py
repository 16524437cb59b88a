"""Each Celery worker serves its own /metrics (workers.metrics.counters: requests by result, calls sent, 429s, send
lateness) on DIALER_WORKER_METRICS_PORT (default 9808; 0 turns it off). Several workers on one host take
the next free ports, each logged, so a scrape config or `docker compose` (one worker per container, port
9808 each) finds them."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_init
from prometheus_client import start_http_server

from workers.metrics.counters import registry

log = logging.getLogger(__name__)

DEFAULT_PORT = 9808
PORTS_TO_TRY = 20


def metrics_port() -> int:
    raw = os.environ.get("DIALER_WORKER_METRICS_PORT", str(DEFAULT_PORT))
    try:
        return int(raw)
    except ValueError:
        log.error("DIALER_WORKER_METRICS_PORT=%r is not a port number: worker metrics are off", raw)
        return 0


def serve_metrics(port: int, addr: str = "0.0.0.0") -> int | None:
    """Start the exporter on `port` or the next free one; the port taken, or None."""
    for candidate in range(port, port + PORTS_TO_TRY):
        try:
            start_http_server(candidate, addr=addr, registry=registry())
        except OSError:
            continue
        log.warning("worker metrics on http://%s:%d/metrics", addr, candidate)
        return candidate
    log.error("no free port in %d-%d for the worker's metrics", port, port + PORTS_TO_TRY - 1)
    return None


@worker_init.connect
def _start_exporter(**_: Any) -> None:
    port = metrics_port()
    if port:
        serve_metrics(port)
