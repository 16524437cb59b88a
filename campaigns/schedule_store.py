"""A campaign's recurring schedule in Postgres (one per campaign), so it survives restarts of beat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from campaigns.errors import InvalidRequest, NotFound
from campaigns.retirement import require_not_archived
from campaigns.schedules import CronSpec, InvalidSchedule, ScheduleView, next_firing
from campaigns.states import CampaignState


@dataclass(frozen=True)
class StoredSchedule:
    campaign_id: int
    cron: str
    timezone: str
    only_outcomes: list[str] | None
    run_for_s: int | None
    until_at: datetime | None
    next_run_at: datetime | None
    enabled: bool
    last_note: str | None

    @property
    def view(self) -> ScheduleView:
        run_for = timedelta(seconds=self.run_for_s) if self.run_for_s else None
        return ScheduleView(CronSpec(self.cron, self.timezone), self.next_run_at, self.until_at, run_for)


_COLUMNS = "campaign_id, cron, timezone, only_outcomes, run_for_s, until_at, next_run_at, enabled, last_note"


def set_schedule(
    conn: psycopg.Connection,
    campaign_id: int,
    spec: CronSpec,
    *,
    only: list[str] | None,
    until_at: datetime | None,
    run_for: timedelta | None,
    now: datetime,
) -> StoredSchedule:
    """Create or replace the campaign's schedule; its first firing is the next one after `now`."""
    row = conn.execute("SELECT state, archived_at FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
    require_not_archived({"id": campaign_id, "archived_at": row[1]})
    if row[0] == CampaignState.CANCELLED:
        raise InvalidRequest(f"campaign {campaign_id} is cancelled; clone it to schedule it again")
    first = next_firing(spec, now)
    if until_at is not None and first > until_at:
        local = first.astimezone(ZoneInfo(spec.timezone))
        raise InvalidRequest(f"the schedule's first firing ({local:%Y-%m-%d %H:%M %Z}) is after --until")
    values: dict[str, Any] = {
        "c": campaign_id, "cron": spec.cron, "tz": spec.timezone, "only": only, "until": until_at,
        "run_for": int(run_for.total_seconds()) if run_for else None, "next": first,
    }
    conn.execute(
        "INSERT INTO campaign_schedule (campaign_id, cron, timezone, only_outcomes, run_for_s, until_at, "
        "next_run_at) VALUES (%(c)s, %(cron)s, %(tz)s, %(only)s, %(run_for)s, %(until)s, %(next)s) "
        "ON CONFLICT (campaign_id) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, "
        "only_outcomes = excluded.only_outcomes, run_for_s = excluded.run_for_s, "
        "until_at = excluded.until_at, "
        "next_run_at = excluded.next_run_at, enabled = true, last_note = NULL",
        values,
    )
    conn.commit()
    schedule = get_schedule(conn, campaign_id)
    assert schedule is not None
    return schedule


def get_schedule(conn: psycopg.Connection, campaign_id: int) -> StoredSchedule | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM campaign_schedule WHERE campaign_id = %s", (campaign_id,)
        ).fetchone()
    return StoredSchedule(**row) if row else None


def remove_schedule(conn: psycopg.Connection, campaign_id: int) -> bool:
    """Stop the schedule; a run in progress goes on to its end. True if there was one."""
    removed = conn.execute("DELETE FROM campaign_schedule WHERE campaign_id = %s", (campaign_id,)).rowcount
    conn.commit()
    return removed > 0


def due_schedules(conn: psycopg.Connection, now: datetime) -> list[StoredSchedule]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM campaign_schedule WHERE enabled AND next_run_at <= %s "
            "ORDER BY next_run_at FOR UPDATE SKIP LOCKED",
            (now,),
        ).fetchall()
    return [StoredSchedule(**row) for row in rows]


def record_firing(
    conn: psycopg.Connection, campaign_id: int, next_run_at: datetime | None, note: str | None
) -> None:
    conn.execute(
        "UPDATE campaign_schedule SET next_run_at = %s, enabled = %s, last_note = %s WHERE campaign_id = %s",
        (next_run_at, next_run_at is not None, note, campaign_id),
    )


def parse_until(text: str | None, zone: str = "UTC") -> datetime | None:
    """`2027-01-31` or an ISO date-time; a bare date means the end of that day, and a date-time without an
    offset that time, in `zone` (the cron's)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidSchedule(f"--until {text!r}: expected a date (2027-01-31) or an ISO date-time") from exc
    if len(text) == 10:
        value = value + timedelta(days=1) - timedelta(microseconds=1)
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value
