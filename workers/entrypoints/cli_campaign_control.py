"""`dialer campaign set|start|pause|resume|cancel|status`: run a loaded campaign and watch it (`results` is in
workers.entrypoints.cli_campaign_results)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from campaigns import control, settings_rules
from campaigns.accounts import resolve_account_id
from campaigns.db import connect
from campaigns.errors import InvalidRequest
from workers.entrypoints.cli_campaign import campaign_app, one_of
from workers.entrypoints.cli_campaign_accounts import accounts_change
from workers.entrypoints.cli_campaign_runs import print_runs
from workers.entrypoints.cli_circuits import accounts_table, changes_table
from workers.entrypoints.cli_follow import follow as follow_live
from workers.entrypoints.cli_webhooks import NOTIFY_URL_HELP, apply_notify_url
from workers.housekeeping.hangup import hang_up_live_calls
from workers.providers.http import make_client

console = Console()


def _window(value: str | None) -> tuple[time | None, time | None]:
    if value is None:
        return None, None
    try:
        start, end = value.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)
    except ValueError as exc:
        raise typer.BadParameter(f"--window takes HH:MM-HH:MM, not {value!r}") from exc


def _days(value: str | None) -> list[int] | None:
    """'1-5' or '1,3,5' (ISO weekdays, 1 = Monday), by the rules the API applies too."""
    return None if value is None else settings_rules.parse_days(value)


def _dates(value: str | None) -> list[date] | None:
    """'2026-12-24,2026-12-31' -> dates; '' -> [] (clears the list)."""
    if value is None:
        return None
    try:
        return sorted({date.fromisoformat(part.strip()) for part in value.split(",") if part.strip()})
    except ValueError as exc:
        raise typer.BadParameter(f"--blackout-dates takes YYYY-MM-DD,…, not {value!r}") from exc


def _sip_headers(values: list[str] | None) -> dict[str, str] | None:
    """NAME=VALUE pairs as a mapping (checked with the other options by control.configure)."""
    if not values:
        return None
    headers: dict[str, str] = {}
    for value in values:
        name, sep, header_value = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--sip-header takes NAME=VALUE, not {value!r}")
        headers[name.strip()] = header_value.strip()
    return headers


def _retry(values: list[str] | None) -> dict[str, dict[str, int]] | None:
    """--retry busy=300:3 → {"busy": {"delay_s": 300, "max_attempts": 3}}."""
    if not values:
        return None
    policy: dict[str, dict[str, int]] = {}
    for item in values:
        try:
            outcome, rule = item.split("=")
            delay, attempts = rule.split(":")
            policy[outcome] = {"delay_s": int(delay), "max_attempts": int(attempts)}
        except ValueError as exc:
            raise typer.BadParameter(f"--retry takes OUTCOME=DELAY_S:MAX_ATTEMPTS, not {item!r}") from exc
    return policy


@campaign_app.command("set")
def set_(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    account: str = typer.Option(None, help="Provider account name or id (the primary if it has fallbacks)"),
    fallback_account: list[str] = typer.Option(
        None, help="An account that takes over when the ones before it fail, repeatable, in order "
        "(replaces the fallbacks)"),
    no_fallbacks: bool = typer.Option(False, "--no-fallbacks", help="Drop every fallback account"),
    account_caller_id: list[str] = typer.Option(
        None, help="ACCOUNT=CALLER_ID: the caller id one account dials with (else --caller-id), repeatable"),
    routing: str = typer.Option(None, help="failover (the first healthy account) or split (every healthy "
                                "account, each at its CPS)"),
    caller_id: str = typer.Option(None, help="Caller id, E.164"),
    answer_url: str = typer.Option(None, help="Your answer URL (we redirect answered calls to it)"),
    cps: float = typer.Option(None, help="The campaign's own CPS cap (under the account's)"),
    max_concurrent: int = typer.Option(None, help="The campaign's cap on live calls, under the account's"),
    weight: int = typer.Option(None, help="Share of the account's budget against its other campaigns"),
    window: str = typer.Option(None, help="Local calling hours, e.g. 09:00-21:00"),
    days: str = typer.Option(None, help="ISO weekdays, e.g. 1-5"),
    start_at: datetime = typer.Option(None, help="No call before this ISO date-time"),
    end_at: datetime = typer.Option(None, help="No call after this ISO date-time; what is left then expires"),
    timezone: str = typer.Option(None, help="Judge the window in this zone for everyone"),
    time_zone: str = typer.Option(None, "--time-zone", hidden=True, help="Old name of --timezone."),
    retry: list[str] = typer.Option(None, help="OUTCOME=DELAY_S:MAX_ATTEMPTS, repeatable"),
    ring_timeout: int = typer.Option(None, help="Seconds a call may ring before it counts as no_answer"),
    time_limit: int = typer.Option(None, help="Seconds an answered call may last at most"),
    machine_detection: str = typer.Option(
        None, help="true (detect and report machines), hangup (detect and hang up on them) or false (off)"
    ),
    message: str = typer.Option(None, help="What an answered call hears (without --answer-url); "
                                "{column} is filled from each row"),
    audio_url: str = typer.Option(None, help="Play this audio instead of speaking the message"),
    voice: str = typer.Option(None, help="Voice of the spoken message, where the provider takes one"),
    language: str = typer.Option(None, help="Language of the spoken message, e.g. en-GB"),
    holidays: bool = typer.Option(None, "--holidays/--no-holidays",
                                  help="Skip public holidays of each destination's own country"),
    blackout_dates: str = typer.Option(None, help="The campaign's own days off, e.g. 2026-12-24,2026-12-31 "
                                       "('' clears them)"),
    opt_out_digit: str = typer.Option(
        None, help="Offer 'press KEY to stop these calls' after the message (Plivo, Vobiz, Bandwidth)"
    ),
    caller_name: str = typer.Option(None, help="Caller's display name, at most 50 characters (Plivo, Vobiz)"),
    sip_header: list[str] = typer.Option(
        None, help="NAME=VALUE sent with each call and echoed on its callbacks, repeatable (Plivo)"
    ),
    fallback_url: str = typer.Option(None, help="Your URL the carrier tries when the answer URL fails"),
    send_digits: str = typer.Option(None, help="DTMF sent once the call connects, e.g. 1w2W3 (Plivo, Vobiz)"),
    machine_detection_time: int = typer.Option(
        None, help="Milliseconds allowed to tell a machine from a person, 2000-10000 (Plivo, Vobiz)"
    ),
    callback_retries: int = typer.Option(
        None, help="How often the carrier retries a failed callback (Plivo)"
    ),
    notify_url: str = typer.Option(None, help=NOTIFY_URL_HELP + " Replaces the account's for this campaign."),
) -> None:
    """Configure a campaign before (or between) runs."""

    zone = one_of("--timezone", timezone, "--time-zone", time_zone)
    script = [name for name, value in (("--message", message), ("--audio-url", audio_url), ("--voice", voice),
                                       ("--language", language)) if value is not None]
    if answer_url is not None and script:
        raise typer.BadParameter("--answer-url takes over answered calls; give it without "
                                 + ", ".join(script))
    window_start, window_end = _window(window)
    options = {
        k: v
        for k, v in {
            "ring_timeout": ring_timeout,
            "time_limit": time_limit,
            "machine_detection": machine_detection,
            "message": message,
            "opt_out_digit": opt_out_digit,  # checked by control.configure
            "audio_url": audio_url,
            "voice": voice,
            "language": language,
            "caller_name": caller_name,
            "sip_headers": _sip_headers(sip_header),
            "fallback_url": fallback_url,
            "send_digits": send_digits,
            "machine_detection_time": machine_detection_time,
            "callback_retries": callback_retries,
        }.items()
        if v is not None
    }
    with connect() as conn:
        accounts = accounts_change(conn, account=account, fallbacks=fallback_account,
                                   caller_ids=account_caller_id, no_fallbacks=no_fallbacks)
        settings = control.CampaignSettings(
            account_id=resolve_account_id(conn, account) if account else None,
            caller_id=caller_id,
            answer_url=answer_url,
            cps=cps,
            max_concurrent=max_concurrent,
            weight=weight,
            window_start=window_start,
            window_end=window_end,
            window_days=_days(days),
            start_at=start_at,
            end_at=end_at,
            timezone_override=zone,
            retry_policy=_retry(retry),
            provider_options=options or None,
            observe_holidays=holidays,
            blackout_dates=_dates(blackout_dates),
            routing=routing,
        )
        control.configure(conn, campaign_id, settings, accounts)
        apply_notify_url(conn, notify_url, campaign_id=campaign_id)
    console.print(f"campaign {campaign_id} updated")


@campaign_app.command("start")
def start(campaign_id: int = typer.Argument(..., help="Campaign id.")) -> None:
    """Start (or resume) dialing."""
    with connect() as conn:
        control.start(conn, campaign_id)
    console.print(f"campaign {campaign_id} running")


@campaign_app.command("resume")
def resume(campaign_id: int = typer.Argument(..., help="Campaign id.")) -> None:
    """Resume a paused campaign."""
    with connect() as conn:
        control.resume(conn, campaign_id)
    console.print(f"campaign {campaign_id} running")


@campaign_app.command("pause")
def pause(campaign_id: int = typer.Argument(..., help="Campaign id.")) -> None:
    """Stop placing new calls; calls in progress finish and are recorded."""
    with connect() as conn:
        control.pause(conn, campaign_id)
    console.print(f"campaign {campaign_id} paused")


@campaign_app.command("cancel")
def cancel(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    hangup: bool = typer.Option(False, "--hangup", help="Also end live calls through each provider's "
                                "hang-up API (their final results are still recorded)"),
) -> None:
    """Cancel every destination not yet dialed; with --hangup, end the calls in progress too."""
    with connect() as conn:
        count = control.cancel(conn, campaign_id)
        console.print(f"campaign {campaign_id} cancelled ({count} destinations not dialed)")
        if hangup:
            with make_client() as client:
                report = hang_up_live_calls(conn, client, campaign_id)
            console.print(hangup_summary(report))


def hangup_summary(report: Any) -> str:
    """One line on what `--hangup` did (a workers.housekeeping.hangup.HangupReport)."""
    parts = [f"hang-up asked for {report.requested} live calls"]
    if report.already_ended:
        parts.append(f"{report.already_ended} had already ended")
    if report.without_id:
        parts.append(f"{report.without_id} had no id from the carrier yet (they end at their time limit)")
    for provider, n in sorted(report.unsupported.items()):
        parts.append(f"{n} on {provider} cannot be hung up (no hang-up API): they end at their time limit")
    if report.errors:
        parts.append(f"{len(report.errors)} refused: {report.errors[0]}")
    return "; ".join(parts)


def status_table(st: control.CampaignStatus) -> Table:
    table = Table(
        title=f"campaign {st.id} · {st.name} · {st.state}"
        + (f" ({st.state_reason})" if st.state_reason else "")
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in sorted(st.by_status.items()):
        table.add_row(f"destinations {key}", str(value))
    for key, value in sorted(st.by_outcome.items()):
        table.add_row(f"attempts {key}", str(value))
    table.add_row("attempts", str(st.attempts))
    table.add_row("429s met (not attempts)", str(st.throttled))
    table.add_row("talk time, s", str(st.answered_seconds))
    if st.mean_duration_s is not None:
        table.add_row("mean answered duration, s", f"{st.mean_duration_s:.1f}")
    table.add_row("rows rejected at load", str(st.rows_rejected))
    return table


@campaign_app.command("status")
def status(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Live view (CPS, live calls, outcomes, ETA)"),
    run: int = typer.Option(None, help="One run's outcomes instead (see `dialer campaign runs`)"),
    as_json: bool = typer.Option(False, "--json", help="Write the counts as JSON (GET /campaigns/{id}'s)."),
) -> None:
    """Counts per destination status and outcome (all runs), or one run's; with --follow, a live view until
    it stops running."""

    if follow and (run is not None or as_json):
        extra = [name for name, given in (("--run", run is not None), ("--json", as_json)) if given]
        raise typer.BadParameter("--follow shows the live campaign; give it without " + ", ".join(extra))
    if follow:
        with connect() as conn:
            control.status(conn, campaign_id)  # a missing campaign is an error, not an empty view
        follow_live(campaign_id, console)
    if run is not None:
        print_runs(campaign_id, only_run=run, as_json=as_json)
        return
    with connect() as conn:
        report = control.status(conn, campaign_id)
    if as_json:
        typer.echo(report.model_dump_json(by_alias=True, indent=2))
        return
    console.print(status_table(report))
    if report.accounts:
        console.print(accounts_table(report.accounts))
        changes = changes_table(report.accounts)
        if changes is not None:
            console.print(changes)


__all__ = ["InvalidRequest", "status_table"]
