"""A campaign's accounts in order: its primary (`campaign.account_id`) first, then its fallbacks
(`campaign_fallback_account`, by position), each with the caller id it dials with (its own, or the
campaign's). The dispatcher routes by this order (campaigns.account_routing); the dial chunk dials with the
caller id of the account its chunk is for; DNC screening reads every account's list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Fallback:
    account_id: int
    caller_id: str | None = None  # None: the campaign's caller_id


def has_fallbacks_sql(campaign_sql: str) -> str:
    """SQL: whether the campaign `campaign_sql` names has another account to fail over to. The one condition
    the chunk's campaign read, the pause on 401/402 and the send evidence's retry share."""
    return f"EXISTS (SELECT 1 FROM campaign_fallback_account hf WHERE hf.campaign_id = {campaign_sql})"


def accounts_sql(campaign_sql: str) -> str:
    """SQL: the ids of the campaign's accounts, its primary and its fallbacks (for `IN (...)`)."""
    return (f"SELECT ca.account_id FROM campaign ca WHERE ca.id = {campaign_sql} UNION ALL "
            f"SELECT cf.account_id FROM campaign_fallback_account cf WHERE cf.campaign_id = {campaign_sql}")


def fallbacks_of(conn: psycopg.Connection, campaign_ids: Iterable[int]) -> dict[int, list[Fallback]]:
    """Each campaign's fallbacks in order (campaigns without any are absent)."""
    ids = sorted(set(campaign_ids))
    found: dict[int, list[Fallback]] = {}
    if not ids:
        return found
    rows = conn.execute(
        "SELECT campaign_id, account_id, caller_id FROM campaign_fallback_account "
        "WHERE campaign_id = ANY(%s) ORDER BY campaign_id, position", (ids,)).fetchall()
    for campaign_id, account_id, caller_id in rows:
        found.setdefault(campaign_id, []).append(Fallback(account_id, caller_id))
    return found


def account_order(primary: int | None, fallbacks: Sequence[Fallback]) -> list[int]:
    """The campaign's accounts, primary first."""
    return ([primary] if primary is not None else []) + [f.account_id for f in fallbacks]


def campaign_fallbacks(conn: psycopg.Connection, campaign_id: int) -> list[Fallback]:
    """One campaign's fallbacks in order."""
    return fallbacks_of(conn, [campaign_id]).get(campaign_id, [])


def accounts_of(conn: psycopg.Connection, campaign_id: int) -> list[int]:
    """One campaign's accounts, primary first (empty if it has none yet)."""
    row = conn.execute("SELECT account_id FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    primary = row[0] if row else None
    return account_order(primary, campaign_fallbacks(conn, campaign_id))


def replace_fallbacks(conn: psycopg.Connection, campaign_id: int, fallbacks: Sequence[Fallback]) -> None:
    """Make these the campaign's fallbacks, in this order (none: it has only its primary). The caller checks
    them (campaigns.control) and holds the transaction."""
    conn.execute("DELETE FROM campaign_fallback_account WHERE campaign_id = %s", (campaign_id,))
    for position, fallback in enumerate(fallbacks, start=1):
        conn.execute(
            "INSERT INTO campaign_fallback_account (campaign_id, position, account_id, caller_id) "
            "VALUES (%s, %s, %s, %s)", (campaign_id, position, fallback.account_id, fallback.caller_id))
