"""The frequency caps (campaigns.frequency_caps) enforced where an attempt is claimed: in the same
transaction that commits the attempt rows, holding a Postgres advisory lock per (account, number).

Two chunk tasks of two campaigns dialing one number serialise on its lock; the second counts the first's
committed attempt and is held back. Destinations over a cap go back to `pending` with `next_attempt_at` at
the moment the cap allows them again (the dispatcher's usual owner and deadline).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from campaigns.frequency_caps import FrequencyCaps, account_caps, next_allowed

# Locks in sorted key order: two tasks locking overlapping sets cannot deadlock.
_LOCK_NUMBERS = """
SELECT pg_advisory_xact_lock(k) FROM (
    SELECT DISTINCT hashtextextended('dialer-frequency-cap:' || %s::text || ':' || n, 0) AS k
    FROM unnest(%s::text[]) AS n ORDER BY k) keys
"""
_RECENT_ATTEMPTS = """
SELECT d.number, array_agg(a.created_at) FROM call_attempt a JOIN destination d ON d.id = a.destination_id
WHERE a.account_id = %s AND d.number = ANY(%s) AND a.created_at > now() - %s
GROUP BY d.number
"""


def over_cap(
    conn: psycopg.Connection, account_id: int, numbers: list[str], caps: FrequencyCaps
) -> dict[str, datetime]:
    """Numbers that may not be attempted now, with the moment each may be. Call inside a transaction:
    the locks taken here are held until it ends."""
    conn.execute(_LOCK_NUMBERS, (account_id, numbers))
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now = row[0]
    waits: dict[str, datetime] = {}
    for number, times in conn.execute(_RECENT_ATTEMPTS, (account_id, numbers, caps.longest_window)):
        allowed_at = next_allowed(times, caps, now)
        if allowed_at is not None:
            waits[number] = allowed_at
    return waits


@contextmanager
def cap_waits(conn: psycopg.Connection, account_id: int, numbers: list[str]) -> Iterator[dict[str, datetime]]:
    """Yield the numbers the account's caps hold back now, each with the moment it may be attempted, inside
    one transaction (holding the numbers' locks) that the caller's hand-backs and attempt inserts join. No
    caps, or no numbers: nothing held back, and no transaction."""
    caps = account_caps(conn, account_id)
    if not caps.any or not numbers:
        yield {}
        return
    with conn.transaction():
        yield over_cap(conn, account_id, numbers, caps)
