"""One campaign described whole, as `dialer campaign show` prints it and `--json` writes it: every setting,
its schedule, destinations per status and rejects per reason. Datetimes are ISO strings."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from campaigns.account_listing import listed_accounts
from campaigns.retirement import no_such_campaign
from campaigns.schedule_store import StoredSchedule, get_schedule
from campaigns.webhook_endpoints import notify_url


def local_time(value: datetime | None, zone: str) -> str | None:
    """A datetime in the given zone to the second, with its abbreviation (2027-01-31 23:59:59 GMT)."""
    return None if value is None else f"{value.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S %Z}"


def _iso_in(value: datetime | None, zone: str) -> str | None:
    return None if value is None else value.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def schedule_summary(schedule: StoredSchedule) -> str:
    """One line on a schedule, its datetimes in the schedule's own zone."""
    only = ", ".join(schedule.only_outcomes) if schedule.only_outcomes else "the whole list"
    line = (f"'{schedule.cron}' in {schedule.timezone}; each run dials {only}; "
            f"next run {local_time(schedule.next_run_at, schedule.timezone) or 'never'}")
    if schedule.run_for_s:
        line += f"; each run lasts {timedelta(seconds=schedule.run_for_s)}"
    if schedule.until_at:
        line += f"; until {local_time(schedule.until_at, schedule.timezone)}"
    if schedule.last_note:
        line += f"; last: {schedule.last_note}"
    return line


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def describe_campaign(conn: psycopg.Connection, campaign_id: int) -> dict[str, Any]:
    """The campaign's identity, state, settings, schedule and counts (NotFound if there is none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT c.*, coalesce(a.name, c.archived_account) AS account FROM campaign c "
            "LEFT JOIN provider_account a ON a.id = c.account_id WHERE c.id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise no_such_campaign(campaign_id)
    statuses = conn.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s "
                            "GROUP BY status ORDER BY status", (campaign_id,)).fetchall()
    reasons = conn.execute("SELECT reason, count(*) FROM rejected_row WHERE campaign_id = %s "
                           "GROUP BY reason ORDER BY reason", (campaign_id,)).fetchall()
    schedule = get_schedule(conn, campaign_id)
    options = dict(row["provider_options"] or {})
    # Where events go: the campaign's own endpoint replaces its account's (never the secret).
    own = notify_url(conn, campaign_id=campaign_id)
    inherited = notify_url(conn, account_id=row["account_id"]) if own is None and row["account_id"] else None
    settings = {
        "account": row["account"], "account_id": row["account_id"], "caller_id": row["caller_id"],
        "answer_url": row["answer_url"], "message": options.pop("message", None),
        "default_region": row["default_region"],
        "window": f"{row['window_start']:%H:%M}-{row['window_end']:%H:%M}",
        "days": sorted(row["window_days"]), "timezone": row["timezone_override"],
        "holidays": row["observe_holidays"], "blackout_dates": [d.isoformat() for d in row["blackout_dates"]],
        "start_at": _jsonable(row["start_at"]), "end_at": _jsonable(row["end_at"]),
        "cps": row["cps"], "max_concurrent": row["max_concurrent"], "weight": row["weight"],
        "retry_policy": row["retry_policy"] or {}, "provider_options": options,
        "accounts": [a.as_dict() for a in listed_accounts(conn, campaign_id)],
        "routing": row["routing"],
        "notify_url": own or inherited,
        "notify_url_from": "campaign" if own else "account" if inherited else None,
    }
    return {
        "id": row["id"], "name": row["name"], "state": row["state"], "state_reason": row["state_reason"],
        "archived_at": _jsonable(row["archived_at"]), "created_at": _jsonable(row["created_at"]),
        "rows": {"total": row["rows_total"], "loaded": row["rows_loaded"], "rejected": row["rows_rejected"]},
        "settings": settings,
        "schedule": None if schedule is None else {
            "cron": schedule.cron, "timezone": schedule.timezone, "only": schedule.only_outcomes,
            "run_for_s": schedule.run_for_s, "until": _iso_in(schedule.until_at, schedule.timezone),
            "next_run": _iso_in(schedule.next_run_at, schedule.timezone), "last_note": schedule.last_note,
        },
        "destinations_by_status": {status: int(count) for status, count in statuses},
        "rejects_by_reason": {reason: int(count) for reason, count in reasons},
    }
