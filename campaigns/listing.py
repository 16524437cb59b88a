"""Campaigns as a list: newest first, filtered by state and account, a page at a time. The one query behind
`dialer campaign list`, GET /campaigns and the console's campaigns page (a campaign still loading is never
listed: its loader's transaction has not committed it)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.states import CampaignState

LISTED_STATES = (CampaignState.DRAFT, CampaignState.RUNNING, CampaignState.PAUSED, CampaignState.COMPLETED,
                 CampaignState.CANCELLED)
LIST_SQL = f"""
SELECT id, name, state, state_reason, account_id, rows_total, rows_loaded, rows_rejected,
       throttled_count AS throttled, created_at, updated_at, archived_at
FROM campaign
WHERE state <> '{CampaignState.LOADING.value}'
  AND (%(archived)s OR archived_at IS NULL)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(account)s::bigint IS NULL OR account_id = %(account)s)
  AND (%(accounts)s::bigint[] IS NULL OR account_id = ANY(%(accounts)s))
ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s
"""


def list_campaigns(conn: psycopg.Connection, *, state: str | None = None, account_id: int | None = None,
                   within_accounts: list[int] | None = None, limit: int = 50,
                   offset: int = 0, archived: bool = False) -> list[dict[str, Any]]:
    """Campaign rows (the columns of CampaignBase, the 429s met and the timestamps), newest first.
    within_accounts: only these accounts' campaigns (a key limited to some accounts); None: all.
    archived: archived campaigns too (hidden otherwise)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(LIST_SQL, {"state": state, "account": account_id, "accounts": within_accounts,
                                      "limit": limit, "offset": offset, "archived": archived}).fetchall()
