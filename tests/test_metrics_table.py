"""The README's metrics table names every metric the code exports, and nothing else (issue 22: one was
missing): the in-process ones (every worker's and the API's registry) and the state the API reads from
Postgres and Redis at scrape time."""

from __future__ import annotations

import re
from pathlib import Path

import redis
from prometheus_client import generate_latest
from prometheus_client.registry import REGISTRY

from campaigns.config import get_settings
from workers.entrypoints.api import app as _api  # noqa: F401  (registers the API process's metrics)
from workers.metrics.state_collector import DialerStateCollector
from workers.runtime import celery_app as _worker  # noqa: F401  (registers a worker's metrics)

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_table() -> set[str]:
    """Every metric named in the README's metrics table (its rows start with a backticked metric name)."""
    rows = [line for line in README.read_text().splitlines() if re.match(r"\s*\| `(dialer|celery)_", line)]
    assert rows, "the README has no metrics table"
    return {name for row in rows for name in re.findall(r"`((?:dialer|celery)_[a-z_]+)`", row.split("|")[1])}


def _exported(database_url: str) -> set[str]:
    text = generate_latest(REGISTRY).decode()
    names = set(re.findall(r"^# TYPE ((?:dialer|celery)_[a-z_]+) ", text, re.MULTILINE))
    client = redis.Redis.from_url(get_settings().redis_url)
    collector = DialerStateCollector(database_url, client)
    try:
        for family in collector.collect():
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    finally:
        collector.close()
        client.close()
    return names


def test_the_readme_metrics_table_lists_every_exported_metric(database_url: str) -> None:
    exported = _exported(database_url)
    assert "dialer_send_refused_late_total" in exported and "celery_task_failed_total" in exported
    table = _readme_table()
    missing = sorted(exported - table)
    assert missing == [], f"exported but missing from the README's metrics table: {missing}"
    unknown = sorted(table - exported)
    assert unknown == [], f"in the README's metrics table but exported by nothing: {unknown}"
