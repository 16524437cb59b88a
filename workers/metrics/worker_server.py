"""Each Celery worker serves its own /metrics (workers.metrics.counters: requests by result, calls sent, 429s,
send lateness) on DIALER_WORKER_METRICS_PORT (default 9808; 0 turns it off). Several workers on one host
take the next free ports, each logged, so a scrape config or `docker compose` (one worker per container,
port 9808 each) finds them."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init
from prometheus_client import start_http_server

from campaigns.config import DEFAULT_WORKER_METRICS_PORT, get_settings
from workers.metrics.counters import registry

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_WORKER_METRICS_PORT
PORTS_TO_TRY = 20


def metrics_port() -> int:
    """The port this worker's exporter starts from (Settings.worker_metrics_port); 0: off."""
    return get_settings().worker_metrics_port


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
