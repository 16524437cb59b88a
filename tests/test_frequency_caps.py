"""Frequency caps across campaigns: the rolling-window rule (pure) and its enforcement where attempts are
committed, under per-number locks, so concurrent tasks of two campaigns cannot both slip under a cap."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from campaigns.errors import InvalidRequest
from campaigns.frequency_caps import DAY, WEEK, FrequencyCaps, next_allowed, set_account_caps
from campaigns.secrets_box import encrypt
from campaigns.store.dial_store import load_campaign, queued_destinations, start_attempts

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_under_every_cap_an_attempt_is_allowed_now() -> None:
    caps = FrequencyCaps(per_day=2, per_week=5)
    assert next_allowed([NOW - timedelta(hours=3)], caps, NOW) is None
    assert next_allowed([], caps, NOW) is None


def test_a_full_day_waits_until_the_oldest_counted_attempt_leaves_the_day() -> None:
    caps = FrequencyCaps(per_day=2, per_week=5)
    times = [NOW - timedelta(hours=30), NOW - timedelta(hours=5), NOW - timedelta(hours=1)]
    assert next_allowed(times, caps, NOW) == NOW - timedelta(hours=5) + DAY


def test_a_full_week_binds_even_when_the_day_is_free() -> None:
    caps = FrequencyCaps(per_day=2, per_week=3)
    times = [NOW - timedelta(days=d) for d in (6, 4, 2)]
    assert next_allowed(times, caps, NOW) == NOW - timedelta(days=6) + WEEK


def test_caps_are_validated(db: psycopg.Connection) -> None:
    with pytest.raises(InvalidRequest, match="cannot be above"):
        set_account_caps(db, 1, per_day=6, per_week=5)
    with pytest.raises(InvalidRequest, match="at least 1"):
        set_account_caps(db, 1, per_day=0, per_week=None)


def _two_campaigns_sharing(conn: psycopg.Connection, number: str) -> tuple[int, list[int]]:
    account = conn.execute(
        "INSERT INTO provider_account (name, provider, auth_id, auth_token_encrypted, base_url, cps, "
        "max_concurrent) VALUES (%s, 'plivo', 'MA', %s, 'http://127.0.0.1:9', 1, 1) RETURNING id",
        (f"cap-{uuid.uuid4().hex[:8]}", encrypt("token")),
    ).fetchone()[0]
    set_account_caps(conn, account, per_day=1, per_week=None)
    destinations = []
    for name in ("a", "b", "c", "d"):
        campaign = conn.execute(
            "INSERT INTO campaign (name, account_id, state) VALUES (%s, %s, 'running') RETURNING id",
            (name, account),
        ).fetchone()[0]
        destinations.append(
            conn.execute(
                "INSERT INTO destination (campaign_id, line_no, number, timezone, status) "
                "VALUES (%s, 2, %s, 'UTC', 'queued') RETURNING id",
                (campaign, number),
            ).fetchone()[0]
        )
    return account, destinations


def test_concurrent_campaigns_sharing_a_number_start_one_attempt_under_a_cap_of_one(
    database_url: str,
) -> None:
    number = "+1646555" + str(uuid.uuid4().int % 10000).zfill(4)
    with psycopg.connect(database_url, autocommit=True) as setup:
        _, destinations = _two_campaigns_sharing(setup, number)
    started: list[int] = []
    barrier = threading.Barrier(len(destinations))

    def start_one(destination_id: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            campaign_id = conn.execute(
                "SELECT campaign_id FROM destination WHERE id = %s", (destination_id,)
            ).fetchone()[0]
            campaign = load_campaign(conn, campaign_id)
            assert campaign is not None
            queued = queued_destinations(conn, [destination_id])
            barrier.wait()
            won = start_attempts(
                conn, campaign=campaign, destinations=queued, batch_id=uuid.uuid4(), lease_s=60
            )
            started.extend(a.attempt_id for a in won)

    threads = [threading.Thread(target=start_one, args=(d,)) for d in destinations]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(started) == 1, "a cap of one per day lets exactly one of the four campaigns call"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, next_attempt_at > now() + interval '23 hours' FROM destination "
            "WHERE id = ANY(%s) "
            "ORDER BY status",
            (destinations,),
        ).fetchall()
    assert rows.count(("dialing", None)) + rows.count(("dialing", False)) == 1
    assert rows.count(("pending", True)) == 3, "the others wait until the cap frees, a day later"
