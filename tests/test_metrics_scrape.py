"""The API's /metrics (issue 20 item 3): a bearer credential (the metrics token or any API key; an operator or
viewer key reads only its accounts' series) or 401; and however many scrapes arrive, the state is read from
Postgres at most once per DIALER_METRICS_REFRESH_S, on one session the API holds, never a session per
scrape. Real Postgres and Redis; Postgres itself (pg_stat_database, pg_stat_activity) is the witness."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.core import GaugeMetricFamily, Metric

from campaigns.accounts import add_account
from campaigns.api_keys import create_api_key
from campaigns.config import get_settings
from workers.entrypoints.api.app import create_app
from workers.metrics.state_collector import APPLICATION_NAME, DialerStateCollector
from workers.metrics.state_snapshot import StateSnapshot

TOKEN = f"metrics-{secrets.token_urlsafe(24)}"
REFRESH_S = 2.0
SCRAPES = 24


@pytest.fixture(scope="module")
def client(database_url: str) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIALER_METRICS_TOKEN", TOKEN)
        patch.setenv("DIALER_METRICS_REFRESH_S", str(REFRESH_S))
        get_settings.cache_clear()
        try:
            with TestClient(create_app(apply_events=False)) as test_client:
                yield test_client
        finally:
            get_settings.cache_clear()


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.mark.parametrize("headers", [
    {},
    _bearer("not-the-token"),
    _bearer(TOKEN[:-1]),
    _bearer("dlr_" + secrets.token_urlsafe(32)),  # shaped like an API key, but none
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "},
], ids=["none", "wrong token", "token cut short", "unknown api key", "basic scheme", "empty bearer"])
def test_a_scrape_without_a_valid_credential_is_401_and_shows_nothing(client: TestClient,
                                                                   headers: dict[str, str]) -> None:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"] == "unauthorized"
    assert "dialer_" not in answer.text


def test_the_metrics_token_reads_the_metrics(client: TestClient) -> None:
    answer = client.get("/metrics", headers=_bearer(TOKEN))
    assert answer.status_code == 200
    assert 'dialer_state_up{store="postgres"} 1.0' in answer.text


def _account(conn: psycopg.Connection, prefix: str) -> int:
    return add_account(conn, name=f"{prefix}-{uuid.uuid4().hex[:6]}", provider="plivo", auth_id="MAMETRICS",
                       auth_token="metrics-token", cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")


def test_a_viewer_api_key_reads_only_its_accounts_series(client: TestClient, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        mine, theirs = _account(conn, "metrics-mine"), _account(conn, "metrics-theirs")
        key = create_api_key(conn, name="metrics-viewer", role="viewer", accounts=[mine]).key
    budget = 'dialer_cps_budget{{account="{}"}}'
    deadline = time.monotonic() + 3 * REFRESH_S + 10
    while budget.format(theirs) not in client.get("/metrics", headers=_bearer(TOKEN)).text:
        assert time.monotonic() < deadline, "the snapshot never showed the new accounts"
        time.sleep(0.2)
    everything = client.get("/metrics", headers=_bearer(TOKEN)).text
    assert budget.format(mine) in everything and "dialer_queue_depth" in everything
    answer = client.get("/metrics", headers=_bearer(key))
    assert answer.status_code == 200
    assert budget.format(mine) in answer.text
    # Another account's series, and the deployment-wide ones (every tenant at once), are not the viewer's.
    assert budget.format(theirs) not in answer.text
    assert "dialer_queue_depth" not in answer.text and "dialer_callbacks_unapplied" not in answer.text
    assert all('account="' + str(mine) + '"' in line for line in answer.text.splitlines()
               if line and not line.startswith("#"))


def _sessions_started(conn: psycopg.Connection) -> int:
    """Sessions ever opened on this test database (Postgres' cumulative count)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def _metrics_backends(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(pid, backend_start, query_start) of each session of the metrics collector."""
    return conn.execute("SELECT pid, backend_start, query_start FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = %s",
                        (APPLICATION_NAME,)).fetchall()


def _read_at(text: str) -> float:
    found = re.search(r"^dialer_state_read_timestamp_seconds (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


def test_many_concurrent_scrapes_open_no_session_and_read_postgres_once_per_interval(
        client: TestClient, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as witness:
        client.get("/metrics", headers=_bearer(TOKEN)).raise_for_status()  # the collector's session exists
        time.sleep(1.2)  # past Postgres' 1 s statistics flush of the sessions just opened
        sessions_before = _sessions_started(witness)
        (backend,) = _metrics_backends(witness)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: client.get("/metrics", headers=_bearer(TOKEN)), range(SCRAPES)))
        elapsed = time.monotonic() - started
        time.sleep(1.2)
        sessions_after = _sessions_started(witness)
        after = _metrics_backends(witness)
    assert [a.status_code for a in answers] == [200] * SCRAPES
    assert sessions_after == sessions_before, "a scrape opened a Postgres session"
    assert len(after) == 1 and after[0][:2] == backend[:2], "the collector kept its one session"
    readings = {_read_at(a.text) for a in answers}
    allowed = 1 + int(elapsed // REFRESH_S)  # the scrapes spanned this many refresh intervals at most
    assert len(readings) <= allowed, (readings, elapsed)
    if elapsed < REFRESH_S:  # within one interval Postgres saw no query from the collector at all, or one
        assert after[0][2] == backend[2] or len(readings) == 1


def test_the_state_is_read_again_once_the_interval_has_passed(client: TestClient) -> None:
    time.sleep(REFRESH_S + 0.1)  # whatever an earlier test read is stale: the next scrape reads afresh
    first = _read_at(client.get("/metrics", headers=_bearer(TOKEN)).text)
    assert _read_at(client.get("/metrics", headers=_bearer(TOKEN)).text) == first
    time.sleep(REFRESH_S + 0.1)
    assert _read_at(client.get("/metrics", headers=_bearer(TOKEN)).text) > first


class SlowCollector(DialerStateCollector):
    """The collector's place in the snapshot, taking a while to read, counting its reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.conn = None

    def collect(self) -> Iterator[Metric]:
        self.reads += 1
        time.sleep(0.3)
        yield GaugeMetricFamily("dialer_test_reads", "reads so far", value=self.reads)


def test_scrapes_that_arrive_during_a_refresh_wait_for_it_instead_of_reading_again() -> None:
    collector = SlowCollector()
    snapshot = StateSnapshot(collector, refresh_s=60)

    async def scrape_together() -> list[bytes]:
        return await asyncio.gather(*(snapshot.latest() for _ in range(10)))

    texts = asyncio.run(scrape_together())
    assert collector.reads == 1 and snapshot.refreshes == 1
    assert len(set(texts)) == 1 and b"dialer_test_reads 1.0" in texts[0]
