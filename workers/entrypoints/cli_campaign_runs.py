"""`dialer campaign schedule|runs|rerun|clone`: recurring and one-off runs of a campaign."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from campaigns import runs
from campaigns.clone import clone_campaign
from campaigns.db import connect
from campaigns.errors import InvalidRequest
from campaigns.schedule_store import get_schedule, parse_until, remove_schedule, set_schedule
from campaigns.schedules import parse_cron_spec, parse_duration, parse_outcomes
from campaigns.states import RunTrigger
from workers.entrypoints.cli_campaign import campaign_app

console = Console()


@campaign_app.command("schedule")
def schedule(
    campaign_id: int,
    cron: str = typer.Option(
        None, help="Five cron fields and a time zone, e.g. '0 10 * * 1-5 Europe/London'"
    ),
    timezone: str = typer.Option(None, help="The zone of the cron fields, if the cron does not name one"),
    until: str = typer.Option(None, help="No run starts after this date (2027-01-31) or ISO date-time"),
    only: str = typer.Option(
        None, help="Each run dials only what the last left: e.g. busy,no_answer,expired"
    ),
    run_for: str = typer.Option(None, help="Each run ends this long after it starts (90m, 4h); default: "
                                "at the next firing"),
    off: bool = typer.Option(False, "--off", help="Remove the schedule (a run in progress goes on)"),
) -> None:
    """Start runs of a campaign on a cron schedule; show the schedule without options."""
    with connect() as conn:
        if off:
            removed = remove_schedule(conn, campaign_id)
            console.print(f"campaign {campaign_id}: schedule {'removed' if removed else 'was not set'}")
            return
        if cron:
            set_schedule(
                conn, campaign_id, parse_cron_spec(cron, timezone), only=parse_outcomes(only),
                until_at=parse_until(until), run_for=parse_duration(run_for), now=datetime.now(UTC),
            )
        stored = get_schedule(conn, campaign_id)
    if stored is None:
        console.print(f"campaign {campaign_id} has no schedule (`--cron '0 10 * * 1-5 Europe/London'`)")
        return
    console.print(
        f"campaign {campaign_id}: '{stored.cron}' in {stored.timezone}; "
        f"each run dials {', '.join(stored.only_outcomes) if stored.only_outcomes else 'the whole list'}; "
        f"next run {stored.next_run_at or 'never'}"
        + (f"; until {stored.until_at}" if stored.until_at else "")
        + (f"; last: {stored.last_note}" if stored.last_note else "")
    )


@campaign_app.command("runs")
def runs_(campaign_id: int) -> None:
    """Every run of the campaign with its outcomes."""
    print_runs(campaign_id)


def print_runs(campaign_id: int, only_run: int | None = None) -> None:
    """The runs table: every run, or only `only_run` (InvalidRequest if there is no such run)."""
    with connect() as conn:
        reports = runs.list_runs(conn, campaign_id)
    if only_run is not None:
        reports = [r for r in reports if r.run_no == only_run]
        if not reports:
            raise InvalidRequest(f"campaign {campaign_id} has no run {only_run} (see `dialer campaign runs`)")
    table = Table(title=f"campaign {campaign_id} runs")
    for column in ("run", "trigger", "dials", "destinations", "attempts", "outcomes", "not dialed",
                   "started", "ends", "finished"):
        table.add_column(column)
    for r in reports:
        table.add_row(
            str(r.run_no), r.trigger, ",".join(r.only_outcomes) if r.only_outcomes else "whole list",
            str(r.destinations), str(r.attempts),
            " ".join(f"{k}={v}" for k, v in sorted(r.outcomes.items())), str(r.not_dialed),
            f"{r.started_at:%Y-%m-%d %H:%M}", f"{r.ends_at:%Y-%m-%d %H:%M}" if r.ends_at else "-",
            f"{r.finished_at:%Y-%m-%d %H:%M} ({r.finish_reason})" if r.finished_at else "-",
        )
    console.print(table)


@campaign_app.command("rerun")
def rerun(
    campaign_id: int,
    only: str = typer.Option(None, help="Dial only these outcomes again, e.g. unknown,failed; "
                             "default: the whole list"),
) -> None:
    """Start a new run of a finished campaign now."""
    with connect() as conn:
        started = runs.start_run(conn, campaign_id, only=parse_outcomes(only), trigger=RunTrigger.RERUN)
    console.print(
        f"campaign {campaign_id}: run {started.run_no} started with {started.destinations} destinations"
    )


@campaign_app.command("clone")
def clone(campaign_id: int, name: str = typer.Option(None, help="The new campaign's name")) -> None:
    """Copy a campaign (settings and destinations) as a new draft."""
    with connect() as conn:
        new_id = clone_campaign(conn, campaign_id, name)
    console.print(
        f"campaign {campaign_id} cloned as campaign {new_id} (draft: `dialer campaign start {new_id}`)"
    )
