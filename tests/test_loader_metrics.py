"""dialer_loader_rows_total and dialer_loader_seconds_total count every load (issue 22: a CLI load did not
count, its process being the one never scraped): a load adds its rows and time to Postgres in its own
transaction, and the API's /metrics exports the sum. A real `dialer campaign create` in a subprocess and a
real upload to the API both show up."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from campaigns.api_keys import create_api_key
from campaigns.config import get_settings
from tests.engine_harness import numbers
from tests.polling import wait_for
from workers.entrypoints.api.app import create_app

TOKEN = f"metrics-{secrets.token_urlsafe(24)}"


@pytest.fixture()
def client(database_url: str) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIALER_METRICS_TOKEN", TOKEN)
        patch.setenv("DIALER_METRICS_REFRESH_S", "0.2")
        get_settings.cache_clear()
        try:
            with TestClient(create_app(apply_events=False)) as test_client:
                yield test_client
        finally:
            get_settings.cache_clear()


def _loader(client: TestClient) -> tuple[float, float]:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    found = dict(re.findall(r"^(dialer_loader_(?:rows|seconds)_total) (\S+)$", text, re.MULTILINE))
    return float(found.get("dialer_loader_rows_total", "nan")), float(found.get("dialer_loader_seconds_total",
                                                                                  "nan"))


def _csv(count: int, start: int) -> str:
    return "phone,name\n" + "".join(f"{p},person {i}\n" for i, p in enumerate(numbers(count, start, "646")))


def test_a_cli_load_and_an_api_upload_both_count_on_metrics(client: TestClient, database_url: str,
                                                            tmp_path: Path) -> None:
    rows_before, seconds_before = _loader(client)
    assert rows_before == rows_before, "dialer_loader_rows_total is not exported"

    path = tmp_path / "people.csv"
    path.write_text(_csv(7, 9100))
    done = subprocess.run([sys.executable, "-m", "workers.entrypoints.cli", "campaign", "create",
                           f"loader-metrics-cli-{secrets.token_hex(3)}", "--csv", str(path)],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: _loader(client)[0] == rows_before + 7, 10, what="the CLI load's rows on /metrics")

    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_api_key(conn, name=f"loader-metrics-{secrets.token_hex(3)}", role="admin").key
    uploaded = client.post("/campaigns", headers={"Authorization": f"Bearer {key}"},
                           data={"name": f"loader-metrics-api-{secrets.token_hex(3)}"},
                           files={"file": ("people.csv", _csv(5, 9200).encode(), "text/csv")})
    assert uploaded.status_code == 201, uploaded.text
    wait_for(lambda: _loader(client)[0] == rows_before + 12, 10, what="the API load's rows on /metrics")
    assert _loader(client)[1] > seconds_before
