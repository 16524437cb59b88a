"""One destination's attempt history: every attempt over every run, with the name of the account that placed
it (a campaign with fallbacks may dial one destination through several carriers), for `dialer campaign
attempts` and GET /campaigns/{id}/destinations/{destination_id}/attempts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from campaigns.errors import NotFound
from campaigns.retirement import no_such_campaign

# The account's name from the attempt; an attempt of a removed account (an archived campaign's) names none.
_ATTEMPTS_SQL = """
SELECT a.run_no, a.attempt_no, p.name, a.status, a.outcome, a.sent_at, a.error_message
FROM call_attempt a LEFT JOIN provider_account p ON p.id = a.account_id
WHERE a.destination_id = %s ORDER BY a.attempt_no
"""


@dataclass(frozen=True)
class AttemptLine:
    run_no: int
    attempt_no: int
    account: str | None  # the name of the account that placed it
    status: str
    outcome: str | None
    sent_at: datetime | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def attempts_of(conn: psycopg.Connection, destination_id: int) -> list[AttemptLine]:
    return [AttemptLine(*row) for row in conn.execute(_ATTEMPTS_SQL, (destination_id,)).fetchall()]


def find_destination(conn: psycopg.Connection, campaign_id: int, number: str) -> int:
    """A campaign's destination by its number as dialed or by its line in the upload; NotFound otherwise."""
    if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
        raise no_such_campaign(campaign_id)
    row = conn.execute(
        "SELECT id FROM destination WHERE campaign_id = %s AND (number = %s OR line_no::text = %s) "
        "ORDER BY (number = %s) DESC, line_no LIMIT 1", (campaign_id, number, number, number)).fetchone()
    if row is None:
        raise NotFound(f"campaign {campaign_id} has no destination {number!r} (give the number as dialed, "
                       "E.164 or sip:, or its line in the upload)")
    return int(row[0])


def destination_attempts(conn: psycopg.Connection, campaign_id: int, number: str) -> list[AttemptLine]:
    return attempts_of(conn, find_destination(conn, campaign_id, number))
