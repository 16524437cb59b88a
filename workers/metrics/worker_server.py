"""Each Celery worker serves its own /metrics (workers.metrics.counters: requests by result, calls sent, 429s,
send lateness) on DIALER_WORKER_METRICS_PORT (default 9808; 0 turns it off). Several workers on one host
take the next free ports, each logged, so a scrape config or `docker compose` (one worker per container,
port 9808 each) finds them.

Reachable like the API's /metrics (issue 20 item 3): it binds DIALER_WORKER_METRICS_HOST, loopback unless
set (compose sets 0.0.0.0 inside its network and publishes nothing), and with DIALER_METRICS_TOKEN set it
answers 401 to a scrape without `Authorization: Bearer <token>`. It reads no store, so it needs no
snapshot: it serves this process's counters from memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery.signals import worker_init, worker_ready
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from campaigns.config import DEFAULT_WORKER_METRICS_PORT, get_settings
from workers.metrics.counters import registry
from workers.metrics.scrape_auth import bearer_credential, is_metrics_token

log = logging.getLogger(__name__)

DEFAULT_PORT = DEFAULT_WORKER_METRICS_PORT
PORTS_TO_TRY = 20
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class MetricsServer:
    """A running exporter: where it listens, and its server (shutdown() stops it)."""

    host: str
    port: int
    server: WSGIServer


def metrics_port() -> int:
    """The port this worker's exporter starts from (Settings.worker_metrics_port); 0: off."""
    return get_settings().worker_metrics_port


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """No access log line per scrape."""


def token_required(app: WsgiApp, token: str) -> WsgiApp:
    """`app` behind `Authorization: Bearer <token>` (constant-time compare); 401 otherwise."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        credential = bearer_credential(environ.get("HTTP_AUTHORIZATION"))
        if credential is not None and is_metrics_token(credential, token):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [b"unauthorized\n"]

    return guarded


def serve_metrics(port: int, host: str | None = None, token: str | None = None) -> MetricsServer | None:
    """Start the exporter on `port` or the next free one, on `host` (default: the setting), behind `token`
    (default: DIALER_METRICS_TOKEN, if set); the server started, or None when no port was free."""
    settings = get_settings()
    host = host or settings.worker_metrics_host
    token = token if token is not None else settings.metrics_token
    app: WsgiApp = make_wsgi_app(registry())
    if token:
        app = token_required(app, token)
    for candidate in range(port, port + PORTS_TO_TRY):
        try:
            server = make_server(host, candidate, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError:
            continue
        threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
        started = MetricsServer(host, candidate, server)
        announce(started, bool(token))
        return started
    log.error("no free port in %d-%d for the worker's metrics", port, port + PORTS_TO_TRY - 1)
    return None


def announce(server: MetricsServer, token_required: bool) -> None:
    log.info("worker metrics on http://%s:%d/metrics%s", server.host, server.port,
             " (bearer token required)" if token_required else "")


_started: MetricsServer | None = None


@worker_init.connect
def _start_exporter(**_: Any) -> None:
    global _started
    port = metrics_port()
    if port:
        _started = serve_metrics(port)


@worker_ready.connect
def _announce_exporter(**_: Any) -> None:
    # worker_init comes before Celery sets up logging, so its INFO line went nowhere: said again once the
    # worker's log is configured (under --loglevel INFO), where operators and the stack tests read the port.
    if _started is not None:
        announce(_started, bool(get_settings().metrics_token))
