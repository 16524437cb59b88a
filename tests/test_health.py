"""Health probes of the API: live answers while the process serves; ready only when Postgres and Redis both
answer, and says which one does not. In-process app (TestClient), real Postgres and Redis."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from campaigns.config import get_settings
from workers.entrypoints.api.app import create_app
from workers.entrypoints.local_stack import free_port


def test_live_and_ready_with_postgres_and_redis_up(database_url: str, auth: dict[str, str]) -> None:
    with TestClient(create_app(apply_events=False)) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        metrics = client.get("/metrics", headers=auth)  # any API key reads them (test_metrics_scrape.py)
        assert metrics.status_code == 200 and 'dialer_state_up{store="postgres"} 1.0' in metrics.text


def _ready_with(variable: str, url: str, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    """/health/ready of an app whose store behind `variable` is a port nothing listens on."""
    monkeypatch.setenv(variable, url)
    get_settings.cache_clear()
    try:
        with TestClient(create_app(apply_events=False)) as client:
            ready: httpx.Response = client.get("/health/ready")
            assert client.get("/health/live").status_code == 200
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    return ready


def test_ready_is_503_naming_redis_when_redis_does_not_answer(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = _ready_with("DIALER_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0", monkeypatch)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"postgres": "ok", "redis": "unavailable"}}


def test_ready_names_the_failed_store_without_exception_text_and_logs_why(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The probe is anonymous: the answer names the store, the log (for the operator) says why.
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="workers.entrypoints.api.routes_health"):
        ready = _ready_with("DIALER_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/dialer",
                            monkeypatch)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"postgres": "unavailable", "redis": "ok"}}
    assert str(port) not in ready.text
    logged = [r for r in caplog.records if r.name == "workers.entrypoints.api.routes_health"]
    assert logged and "postgres unavailable" in logged[0].getMessage() and logged[0].exc_info is not None
