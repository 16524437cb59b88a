"""Helpers for end-to-end tests: the dialer's processes (workers.entrypoints.local_stack), campaigns made
through the real loader, waiting, and the window arithmetic the assertions use.

Every process inherits this test session's DIALER_* environment (its own database and Redis prefix).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis

from workers.entrypoints.local_stack import LocalStack, free_port, local_stack, wait_http

REPO = Path(__file__).resolve().parent.parent

__all__ = ["free_port", "wait_http"]

Stack = LocalStack


@contextmanager
def running_stack(**kwargs: Any) -> Iterator[LocalStack]:
    """workers.entrypoints.local_stack for a test module; on exit, whatever the module left running is
    stopped (its campaigns paused, this session's Celery queues emptied) so the next module starts clean."""
    with local_stack(**kwargs) as stack:
        yield stack
    from campaigns.config import get_settings
    from workers import redis_keys

    settings = get_settings()
    with psycopg.connect(settings.psycopg_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE campaign SET state = 'paused', state_reason = 'test module ended' WHERE state = 'running'"
        )
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for key in client.scan_iter(match=f"{redis_keys.broker_prefix()}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def numbers(count: int, start: int = 0, area: str = "212") -> list[str]:
    """Distinct valid US numbers (NANP exchange 2xx)."""
    return [f"+1{area}{200 + (start + i) // 10000:03d}{(start + i) % 10000:04d}" for i in range(count)]


def load_campaign(name: str, phones: list[str], **options: Any) -> int:
    """A campaign loaded through the real loader from an in-memory CSV; returns its id."""
    from campaigns.loader import LoadOptions, load_campaign_csv

    body = "phone,name\n" + "".join(f"{p},person {i}\n" for i, p in enumerate(phones))
    report = load_campaign_csv(name=name, source=io.BytesIO(body.encode()), options=LoadOptions(**options))
    return report.campaign_id


def prepare_and_start(
    conn: psycopg.Connection,
    campaign_id: int,
    account_id: int,
    *,
    cps: float | None = None,
    provider_options: dict[str, Any] | None = None,
    retry_policy: dict[str, Any] | None = None,
    weight: int = 1,
    start: bool = True,
) -> None:
    """Point a loaded campaign at an account, open its window all day, and start it."""
    from psycopg.types.json import Jsonb

    conn.execute(
        """UPDATE campaign SET account_id = %s, caller_id = '+14155550100', window_start = '00:00',
               window_end = '00:00', cps = %s, weight = %s, provider_options = %s, retry_policy = %s
           WHERE id = %s""",
        (
            account_id,
            cps,
            weight,
            Jsonb(provider_options or {"ring_timeout": 30, "time_limit": 60}),
            Jsonb(retry_policy or {}),
            campaign_id,
        ),
    )
    if start:
        conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    conn.commit()


def campaign_state(conn: psycopg.Connection, campaign_id: int) -> str:
    row = conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    return str(row[0]) if row else "missing"


def max_in_window(times: list[float], counts: list[int] | None = None, window: float = 1.0) -> int:
    """The most calls whose times fall in any half-open window [t, t + window)."""
    events = sorted(zip(times, counts or [1] * len(times), strict=True))
    best = total = 0
    lo = 0
    for hi in range(len(events)):
        total += events[hi][1]
        while events[hi][0] - events[lo][0] >= window:
            total -= events[lo][1]
            lo += 1
        best = max(best, total)
    return best
