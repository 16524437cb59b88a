"""Campaign life cycle and reports: configure, start, pause, resume, cancel, status (one function each,
shared by the CLI and the HTTP API). State changes are conditional updates on the expected state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from campaigns import settings_rules
from campaigns.accounts import provider_takes_answer_url
from campaigns.call_options import machine_detection_mode
from campaigns.dnc import check_opt_out_digit
from campaigns.errors import InvalidRequest, NotFound
from campaigns.states import D, allowed_sources, sql_in
from campaigns.templates import check_script_options, record_missing_variables

STARTABLE = ("draft", "paused")


@dataclass
class CampaignSettings:
    """Fields an operator may set on a campaign; None leaves a field as it is."""

    account_id: int | None = None
    caller_id: str | None = None
    answer_url: str | None = None
    cps: float | None = None
    max_concurrent: int | None = None
    weight: int | None = None
    window_start: time | None = None
    window_end: time | None = None
    window_days: list[int] | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    timezone_override: str | None = None
    retry_policy: dict[str, Any] | None = None
    provider_options: dict[str, Any] | None = None
    observe_holidays: bool | None = None  # skip each destination's national public holidays
    blackout_dates: list[date] | None = None  # the campaign's own days off (replaces the list)


def _campaign(conn: psycopg.Connection, campaign_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
    return row


def configure(conn: psycopg.Connection, campaign_id: int, settings: CampaignSettings) -> None:
    """Apply the given settings, each checked by the rules every way in shares (settings_rules)."""
    row = _campaign(conn, campaign_id)
    account_id = settings.account_id or row["account_id"]
    provider = None
    if account_id is not None:
        found = conn.execute("SELECT provider FROM provider_account WHERE id = %s", (account_id,)).fetchone()
        provider = found[0] if found else None
    settings = settings_rules.checked(settings, region=row["default_region"], provider=provider)
    values: dict[str, Any] = {k: v for k, v in settings.__dict__.items() if v is not None}
    if "retry_policy" in values:
        values["retry_policy"] = Jsonb(values["retry_policy"])
    script_changed = "message" in (settings.provider_options or {})
    if "provider_options" in values:
        check_opt_out_digit(values["provider_options"].get("opt_out_digit"))
        try:
            machine_detection_mode(values["provider_options"])
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        check_script_options(values["provider_options"])
        values["provider_options"] = Jsonb(values["provider_options"])
    if not values:
        return
    assignments = ", ".join(f"{name} = %({name})s" for name in values)
    if "provider_options" in values:
        assignments = assignments.replace(
            "provider_options = %(provider_options)s",
            "provider_options = provider_options || %(provider_options)s",
        )
    conn.execute(
        f"UPDATE campaign SET {assignments}, updated_at = now() WHERE id = %(id)s",
        {**values, "id": campaign_id},
    )
    if script_changed:  # rows lacking one of the template's variables get a warning each
        record_missing_variables(conn, campaign_id, (settings.provider_options or {}).get("message"))
    conn.commit()


def _transition(
    conn: psycopg.Connection, campaign_id: int, sources: tuple[str, ...], target: str, reason: str | None
) -> None:
    row = _campaign(conn, campaign_id)
    cur = conn.execute(
        "UPDATE campaign SET state = %s, state_reason = %s, updated_at = now() "
        "WHERE id = %s AND state = ANY(%s)",
        (target, reason, campaign_id, list(sources)),
    )
    if cur.rowcount == 0:
        raise InvalidRequest(
            f"campaign {campaign_id} is {row['state']}; it must be {' or '.join(sources)} to become {target}"
        )


def start(conn: psycopg.Connection, campaign_id: int) -> None:
    """Draft or paused -> running. Needs an account and a caller id. Starting a draft begins run 1."""
    from campaigns.runs import record_first_run

    row = _campaign(conn, campaign_id)
    require_ready_to_dial(conn, row)
    _transition(conn, campaign_id, STARTABLE, "running", None)
    if row["state"] == "draft":
        record_first_run(conn, campaign_id)
    conn.commit()


def require_ready_to_dial(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    """A campaign row has what dialing needs (an account, a caller id, a script its provider can use), or
    InvalidRequest says how."""
    campaign_id = row["id"]
    if row["account_id"] is None:
        raise InvalidRequest(
            f"campaign {campaign_id} has no provider account: "
            f"`dialer campaign set {campaign_id} --account NAME`"
        )
    if not row["caller_id"]:
        raise InvalidRequest(
            f"campaign {campaign_id} has no caller id: `dialer campaign set {campaign_id} --caller-id +1…`"
        )
    provider = conn.execute(
        "SELECT provider FROM provider_account WHERE id = %s", (row["account_id"],)
    ).fetchone()
    if provider and row["answer_url"] and not provider_takes_answer_url(provider[0]):
        # VoIPbin takes a call's actions at creation; its API names no way to fetch them from a URL.
        raise InvalidRequest(
            f"campaign {campaign_id} has an answer URL, which a {provider[0]} account cannot use: give it a "
            f"message instead (`dialer campaign set {campaign_id} --message …`)"
        )


def pause(conn: psycopg.Connection, campaign_id: int, reason: str = "paused by operator") -> None:
    """Running -> paused: no new call is placed; calls in progress finish and are recorded."""
    _transition(conn, campaign_id, ("running",), "paused", reason)
    conn.commit()


# Attempts committed but not yet marked as sending never reach the carrier: cancel undoes them, conditional
# on `sent_at IS NULL` under the row lock, so the dial task's mark (campaigns.store.dial_store.mark_sending) and
# this cannot both win. Their destinations are cancelled too: a new call stops within the mark's lead.
CANCEL_UNSENT = f"""
WITH gone AS (
    DELETE FROM call_attempt a USING destination d
    WHERE d.id = a.destination_id AND d.campaign_id = %s AND d.status = 'dialing'
      AND d.attempts_made = a.attempt_no AND a.status = 'dialing' AND a.sent_at IS NULL
    RETURNING a.destination_id)
UPDATE destination d SET status = 'cancelled', attempts_made = d.attempts_made - 1, next_attempt_at = NULL,
    updated_at = now()
FROM gone WHERE d.id = gone.destination_id AND {sql_in("d.status", allowed_sources(D.CANCELLED))}"""


def cancel(conn: psycopg.Connection, campaign_id: int) -> int:
    """Stop for good: every destination not yet dialed is cancelled, and so is every attempt not yet sent.
    Calls already placed go on (`cancel --hangup` ends them through the carriers). Returns how many."""
    with conn.transaction():
        _transition(conn, campaign_id, ("draft", "running", "paused"), "cancelled", "cancelled by operator")
        # Rows locked in id order, as the dial task's and the applier's statements take them: no deadlock.
        conn.execute(
            "SELECT id FROM destination WHERE campaign_id = %s "
            "AND status IN ('pending', 'queued', 'retry_wait', 'dialing') ORDER BY id FOR UPDATE",
            (campaign_id,),
        )
        cur = conn.execute(
            "UPDATE destination SET status = 'cancelled', next_attempt_at = NULL, updated_at = now() "
            "WHERE campaign_id = %s AND status IN ('pending', 'queued', 'retry_wait')",
            (campaign_id,),
        )
        unsent = conn.execute(CANCEL_UNSENT, (campaign_id,)).rowcount
    return cur.rowcount + unsent


@dataclass
class CampaignStatus:
    id: int
    name: str
    state: str
    state_reason: str | None
    account_id: int | None
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    throttled: int
    by_status: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    answered_seconds: int = 0
    mean_duration_s: float | None = None

    @property
    def finished(self) -> int:
        return sum(
            v
            for k, v in self.by_status.items()
            if k in ("done", "failed", "invalid", "dnc", "cancelled", "expired", "unknown")
        )


def status(conn: psycopg.Connection, campaign_id: int) -> CampaignStatus:
    row = _campaign(conn, campaign_id)
    by_status: dict[str, int] = dict(
        conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall()
    )
    by_outcome: dict[str, int] = dict(
        conn.execute(
            "SELECT coalesce(outcome, '-'), count(*) FROM call_attempt WHERE campaign_id = %s GROUP BY 1",
            (campaign_id,),
        ).fetchall()
    )
    totals = conn.execute(
        "SELECT count(*), coalesce(sum(duration), 0), avg(duration) FILTER (WHERE outcome = 'answered') "
        "FROM call_attempt WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchone()
    assert totals is not None
    return CampaignStatus(
        id=row["id"],
        name=row["name"],
        state=row["state"],
        state_reason=row["state_reason"],
        account_id=row["account_id"],
        rows_total=row["rows_total"],
        rows_loaded=row["rows_loaded"],
        rows_rejected=row["rows_rejected"],
        throttled=row["throttled_count"],
        by_status=by_status,
        by_outcome=by_outcome,
        attempts=int(totals[0]),
        answered_seconds=int(totals[1]),
        mean_duration_s=float(totals[2]) if totals[2] is not None else None,
    )
