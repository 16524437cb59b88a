"""Frequency caps across campaigns: at most N attempts per number per day and M per week, per account.

A cap counts the account's call attempts on one number in every campaign, over rolling windows (the last
24 hours, the last 7 days), so two campaigns sharing a number share its cap. An attempt a task undid before
its request left (no call was placed) is deleted and stops counting. The check and the attempt rows are one
transaction serialised per (account, number) by the store (campaigns.store), so concurrent tasks cannot
both slip under a cap. This module is the pure rule and the account's settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from campaigns.errors import InvalidRequest, NotFound

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class FrequencyCaps:
    per_day: int | None = None
    per_week: int | None = None

    @property
    def any(self) -> bool:
        return self.per_day is not None or self.per_week is not None

    @property
    def longest_window(self) -> timedelta:
        return WEEK if self.per_week is not None else DAY


def next_allowed(attempt_times: Iterable[datetime], caps: FrequencyCaps, now: datetime) -> datetime | None:
    """None if one more attempt on this number is within the caps now; else the first moment it is (when
    enough of the counted attempts have left every window that is full)."""
    times = sorted(attempt_times)
    waits: list[datetime] = []
    for window, cap in ((DAY, caps.per_day), (WEEK, caps.per_week)):
        if cap is None:
            continue
        recent = [t for t in times if t > now - window]
        if len(recent) >= cap:
            waits.append(recent[len(recent) - cap] + window)
    return max(waits) if waits else None


def account_caps(conn: psycopg.Connection, account_id: int) -> FrequencyCaps:
    row = conn.execute(
        "SELECT max_attempts_per_number_day, max_attempts_per_number_week FROM provider_account "
        "WHERE id = %s",
        (account_id,),
    ).fetchone()
    return FrequencyCaps(*row) if row else FrequencyCaps()


def set_account_caps(
    conn: psycopg.Connection, account_id: int, *, per_day: int | None, per_week: int | None
) -> FrequencyCaps:
    """Set (or clear, with None) an account's caps. A day cap above the week cap would never bind."""
    for name, value in (("per_day", per_day), ("per_week", per_week)):
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1 (or unset), not {value}")
    if per_day is not None and per_week is not None and per_day > per_week:
        raise InvalidRequest(f"per_day ({per_day}) cannot be above per_week ({per_week})")
    cur = conn.execute(
        "UPDATE provider_account SET max_attempts_per_number_day = %s, max_attempts_per_number_week = %s "
        "WHERE id = %s",
        (per_day, per_week, account_id),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no account with id {account_id}")
    return FrequencyCaps(per_day, per_week)
