"""A campaign's accounts as shown to operators (`dialer campaign show`, GET /campaigns/{id}, the console):
in order, each with its role and the caller id it dials with (its own, or the campaign's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import psycopg

# The primary first (position 0), then the fallbacks by position; an archived campaign's removed primary
# shows by the name it kept.
_LISTED_SQL = """
SELECT 0 AS position, c.account_id, coalesce(p.name, c.archived_account), c.caller_id
FROM campaign c LEFT JOIN provider_account p ON p.id = c.account_id
WHERE c.id = %(c)s AND (c.account_id IS NOT NULL OR c.archived_account IS NOT NULL)
UNION ALL
SELECT f.position, f.account_id, p.name, coalesce(f.caller_id, c.caller_id)
FROM campaign_fallback_account f JOIN campaign c ON c.id = f.campaign_id
JOIN provider_account p ON p.id = f.account_id
WHERE f.campaign_id = %(c)s
ORDER BY 1
"""


@dataclass(frozen=True)
class ListedAccount:
    account: str  # its name
    account_id: int | None
    caller_id: str | None  # the one it dials with: its own, or the campaign's
    role: Literal["primary", "fallback"]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def listed_accounts(conn: psycopg.Connection, campaign_id: int) -> list[ListedAccount]:
    rows = conn.execute(_LISTED_SQL, {"c": campaign_id}).fetchall()
    return [ListedAccount(str(name), account_id, caller_id, "primary" if position == 0 else "fallback")
            for position, account_id, name, caller_id in rows]
