"""Each worker's exporter (issue 20 item 3, kept consistent with the API's /metrics): it listens on loopback
unless DIALER_WORKER_METRICS_HOST says otherwise, and with DIALER_METRICS_TOKEN set it answers only a scrape
that carries the token. Real sockets, real HTTP."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest

from campaigns.config import get_settings
from workers.entrypoints.local_stack import free_port
from workers.metrics.worker_server import MetricsServer, serve_metrics


def _outward_address() -> str | None:
    """This host's address on its main interface (no packet is sent), or None if it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture()
def started() -> Iterator[list[MetricsServer]]:
    servers: list[MetricsServer] = []
    yield servers
    for running in servers:
        running.server.shutdown()
        running.server.server_close()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_by_default_the_exporter_listens_on_loopback_only(started: list[MetricsServer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this host has no address but loopback")
    monkeypatch.delenv("DIALER_WORKER_METRICS_HOST", raising=False)
    monkeypatch.delenv("DIALER_METRICS_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        port = free_port()
        running = serve_metrics(port)
    finally:
        get_settings.cache_clear()
    assert isinstance(running, MetricsServer)
    started.append(running)
    assert httpx.get(f"http://127.0.0.1:{running.port}/metrics", timeout=5).status_code == 200
    assert not _reachable(outward, running.port), f"the exporter answers on {outward}"


def test_with_a_token_the_exporter_answers_only_a_scrape_that_carries_it(
        started: list[MetricsServer]) -> None:
    token = secrets.token_urlsafe(24)
    running = serve_metrics(free_port(), host="127.0.0.1", token=token)
    assert running is not None
    started.append(running)
    url = f"http://127.0.0.1:{running.port}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
        refused = httpx.get(url, headers=headers, timeout=5)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "dialer_" not in refused.text
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 200 and "dialer_provider_requests_total" in answer.text
