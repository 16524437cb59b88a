"""Health probes of the API: live answers while the process serves; ready only when Postgres and Redis both
answer, and says which one does not. In-process app (TestClient), real Postgres and Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from campaigns.config import get_settings
from workers.entrypoints.api.app import create_app
from workers.entrypoints.local_stack import free_port


def test_live_and_ready_with_postgres_and_redis_up(database_url: str) -> None:
    with TestClient(create_app(apply_events=False)) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and 'dialer_state_up{store="postgres"} 1.0' in metrics.text


def test_ready_is_503_naming_redis_when_redis_does_not_answer(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALER_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(apply_events=False)) as client:
            ready = client.get("/health/ready")
            assert client.get("/health/live").status_code == 200
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["postgres"] == "ok" and checks["redis"].startswith("unavailable")
