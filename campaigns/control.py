"""Campaign life cycle and reports: configure, start, pause, resume, cancel, status (one function each,
shared by the CLI and the HTTP API). State changes are conditional updates on the expected state."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from campaigns import settings_rules
from campaigns.account_changes import plan_accounts, require_fallbacks_suit, write_fallbacks
from campaigns.account_health import campaign_accounts_health
from campaigns.account_list_rules import AccountsChange
from campaigns.call_options import machine_detection_mode
from campaigns.config import get_settings
from campaigns.dnc import check_opt_out_digit
from campaigns.errors import InvalidRequest
from campaigns.provider_options import unsupported_option
from campaigns.readiness import require_ready_to_dial, undialable_destinations
from campaigns.reports import CampaignStatus as CampaignStatus  # callers name it control's
from campaigns.retirement import no_such_campaign, require_not_archived
from campaigns.runs import record_first_run
from campaigns.settings_rules import CampaignSettings as CampaignSettings  # callers name it control's
from campaigns.settings_rules import InvalidSetting
from campaigns.states import CampaignState
from campaigns.store.operator import cancel_destinations
from campaigns.templates import check_script_options, record_missing_variables

C = CampaignState
STARTABLE = (C.DRAFT, C.PAUSED)
CANCELLABLE = (C.DRAFT, C.RUNNING, C.PAUSED)


def _campaign(conn: psycopg.Connection, campaign_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise no_such_campaign(campaign_id)
    return row


def configure(conn: psycopg.Connection, campaign_id: int, settings: CampaignSettings,
              accounts: AccountsChange | None = None) -> None:
    """Apply the given settings, each checked by the rules every way in shares (settings_rules), and the
    change of the campaign's accounts, its primary and fallbacks (campaigns.account_changes)."""
    row = _campaign(conn, campaign_id)
    require_not_archived(row)
    plan = plan_accounts(conn, row, settings, accounts)
    settings = plan.settings
    account_id = settings.account_id or row["account_id"]
    provider = None
    if account_id is not None:
        found = conn.execute("SELECT provider FROM provider_account WHERE id = %s", (account_id,)).fetchone()
        provider = found[0] if found else None
    settings = settings_rules.checked(settings, region=row["default_region"], provider=provider,
                                      plain_http_urls=get_settings().development)
    if settings.account_id is not None:  # the options already set must suit the new account's provider
        refusal = unsupported_option(provider, {**(row["provider_options"] or {}),
                                                **(settings.provider_options or {})})
        if refusal is not None:
            raise InvalidRequest(f"{refusal.field}: {refusal.message}, and this campaign sets it")
    if provider is not None and settings.account_id not in (None, row["account_id"]):
        _require_dialable_on(conn, campaign_id, provider)
    require_fallbacks_suit(conn, row, plan, settings.provider_options,
                           plain_http_urls=get_settings().development)
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
        if write_fallbacks(conn, campaign_id, plan):
            conn.commit()
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
    write_fallbacks(conn, campaign_id, plan)
    if script_changed:  # rows lacking one of the template's variables get a warning each
        record_missing_variables(conn, campaign_id, (settings.provider_options or {}).get("message"))
    conn.commit()


def _require_dialable_on(conn: psycopg.Connection, campaign_id: int, provider: str) -> None:
    """A new account's provider must dial every destination the campaign may still dial. Refused, not
    marked: the operator decides, and nothing changes behind their back (a wrong account, set back, finds
    its list whole)."""
    undialable = undialable_destinations(conn, campaign_id, provider)
    if undialable is not None:
        raise InvalidSetting(
            "account",
            f"{undialable.describe(campaign_id, provider)}, so its account is unchanged: choose one whose "
            "provider dials them, or load the list again with this account, which rejects each of them "
            "with its line",
        )


def _transition(
    conn: psycopg.Connection,
    campaign_id: int,
    sources: tuple[CampaignState, ...],
    target: CampaignState,
    reason: str | None,
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
    row = _campaign(conn, campaign_id)
    require_ready_to_dial(conn, row)
    _transition(conn, campaign_id, STARTABLE, C.RUNNING, None)
    if row["state"] == C.DRAFT:
        record_first_run(conn, campaign_id)
    conn.commit()


def pause(conn: psycopg.Connection, campaign_id: int, reason: str = "paused by operator") -> None:
    """Running -> paused: no new call is placed; calls in progress finish and are recorded."""
    _transition(conn, campaign_id, (C.RUNNING,), C.PAUSED, reason)
    conn.commit()


def resume(conn: psycopg.Connection, campaign_id: int) -> None:
    """Paused -> running; a draft is refused (it is started, which begins its first run)."""
    row = _campaign(conn, campaign_id)
    # Nothing returns to draft or paused from elsewhere but pause, so start() after this check cannot
    # turn a draft into running by way of resume.
    if row["state"] != C.PAUSED:
        raise InvalidRequest(f"campaign {campaign_id} is {row['state']}; it must be paused to resume"
                             + (" (start a draft with /start)" if row["state"] == C.DRAFT else ""))
    start(conn, campaign_id)


def cancel(conn: psycopg.Connection, campaign_id: int) -> int:
    """Stop for good: every destination not yet dialed is cancelled, and so is every attempt not yet sent.
    Calls already placed go on (`cancel --hangup` ends them through the carriers). Returns how many."""
    with conn.transaction():
        _transition(conn, campaign_id, CANCELLABLE, C.CANCELLED, "cancelled by operator")
        return cancel_destinations(conn, campaign_id=campaign_id)


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
        accounts=campaign_accounts_health(conn, campaign_id),
    )
