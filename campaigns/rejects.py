"""A campaign's rejected rows a page at a time, by line: the one query behind `dialer campaign rejects`,
GET /campaigns/{id}/rejects and the console's campaign page. (Every row as CSV is
campaigns.results_export.write_rejects_csv.)"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from campaigns.errors import InvalidRequest, NotFound
from campaigns.numbers import RejectReason

WHERE = "campaign_id = %(campaign_id)s AND (%(reason)s::text IS NULL OR reason = %(reason)s)"
COUNT_SQL = f"SELECT count(*) FROM rejected_row WHERE {WHERE}"
PAGE_SQL = (f"SELECT line_no, raw_value, reason, detail FROM rejected_row WHERE {WHERE} "
            "ORDER BY line_no, id LIMIT %(limit)s OFFSET %(offset)s")


@dataclass(frozen=True)
class RejectedRow:
    """One CSV row that was not loaded: its line, the raw value, why, and the detail of why."""

    line: int
    raw_value: str
    reason: str
    detail: str | None


@dataclass(frozen=True)
class RejectsPage:
    """How many rows match (for paging), and this page of them."""

    total: int
    rows: list[RejectedRow]


def check_reason(reason: str | None) -> None:
    """InvalidRequest naming the reasons, unless `reason` is None or one of them."""
    if reason is not None and reason not in {r.value for r in RejectReason}:
        raise InvalidRequest(f"unknown reason {reason!r}; one of {', '.join(r.value for r in RejectReason)}")


def reject_page(conn: psycopg.Connection, campaign_id: int, *, reason: str | None = None, limit: int = 100,
                offset: int = 0) -> RejectsPage:
    """The campaign's rejected rows by line (only `reason`'s if given); NotFound for no such campaign."""
    check_reason(reason)
    if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
        raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
    params = {"campaign_id": campaign_id, "reason": reason, "limit": limit, "offset": offset}
    total = conn.execute(COUNT_SQL, params).fetchone()
    rows = [RejectedRow(*row) for row in conn.execute(PAGE_SQL, params).fetchall()]
    return RejectsPage(int(total[0]) if total else 0, rows)
