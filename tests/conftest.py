"""Each test session gets its own Postgres database and Redis key prefix, removed afterwards.

The environment is set in pytest_configure, before any setting is read, so Celery worker and API
processes started by tests inherit the same database and prefix.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.sim_helpers import CallbackSink

# The adversarial suites' size: `ci` keeps `make test` to seconds; `soak` (make fuzz) runs for minutes.
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("soak", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SESSION_TAG = f"t{secrets.token_hex(4)}"
ADMIN_URL = os.environ.get("DIALER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DB = f"dialer_test_{SESSION_TAG}"
REDIS_URL = os.environ.get("DIALER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    base = ADMIN_URL.rsplit("/", 1)[0]
    os.environ["DIALER_DATABASE_URL"] = f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{TEST_DB}"
    os.environ["DIALER_REDIS_URL"] = REDIS_URL
    os.environ["DIALER_REDIS_PREFIX"] = f"dialer-{SESSION_TAG}"
    # Said explicitly, as a developer must: unset, the environment is production (docs/SECURITY.md, "Fail
    # closed"). Every worker, API and CLI process a test starts inherits it with the rest of os.environ.
    os.environ["DIALER_ENVIRONMENT"] = "development"
    os.environ.setdefault("DIALER_SECRET_KEY", f"test-secret-key-{SESSION_TAG}-{secrets.token_hex(16)}")
    # Tests add accounts without an entry point: register the adapters' provider kinds as those do.
    import workers.providers.registry  # noqa: F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak scenarios (long fault runs) run only from `make soak`, which sets DIALER_SOAK=1."""
    if os.environ.get("DIALER_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak scenario: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The session's own database, created with schema.sql and dropped at the end."""
    from campaigns.config import get_settings
    from campaigns.db import init_database

    get_settings.cache_clear()
    url = get_settings().psycopg_url
    init_database(url)
    yield url
    from campaigns.db import get_engine

    get_engine().dispose()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """The Redis server, with every key of this session's prefix deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    prefix = os.environ["DIALER_REDIS_PREFIX"]
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture()
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A raw autocommit connection to the session database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


# The in-process API client and an API key, for the API test modules (a module may define its own).
@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from workers.entrypoints.api.app import create_app

    with TestClient(create_app(apply_events=False)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def auth(database_url: str) -> dict[str, str]:
    from campaigns.api_keys import create_api_key

    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_api_key(conn, name="api-tests", role="admin").key
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def sink() -> Iterator[CallbackSink]:
    """A real HTTP server, one per test module, that records the callbacks a simulator sends it."""
    with CallbackSink() as running:
        yield running
