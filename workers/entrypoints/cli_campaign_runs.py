"""`dialer campaign schedule|runs|rerun|clone`: recurring and one-off runs of a campaign."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from campaigns import runs
from campaigns.clone import clone_campaign
from campaigns.db import connect
from campaigns.describe import schedule_summary
from campaigns.errors import NotFound
from campaigns.retirement import no_such_campaign
from campaigns.schedule_store import get_schedule, parse_until, remove_schedule, set_schedule
from campaigns.schedules import parse_cron_spec, parse_duration, parse_outcomes
from campaigns.states import RunTrigger
from workers.entrypoints.cli_campaign import campaign_app

console = Console()


@campaign_app.command("schedule")
def schedule(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    cron: str = typer.Option(
        None, help="Five cron fields and a time zone, e.g. '0 10 * * 1-5 Europe/London'"
    ),
    timezone: str = typer.Option(None, help="The zone of the cron fields, if the cron does not name one"),
    until: str = typer.Option(None, help="No run starts after this date (2027-01-31, the end of that day) "
                              "or ISO date-time, in the cron's zone unless it has an offset"),
    only: str = typer.Option(
        None, help="Each run dials only what the last left: e.g. busy,no_answer,expired"
    ),
    run_for: str = typer.Option(None, help="Each run ends this long after it starts (90m, 4h); default: "
                                "at the next firing"),
    off: bool = typer.Option(False, "--off", help="Remove the schedule (a run in progress goes on)"),
) -> None:
    """Start runs of a campaign on a cron schedule; show the schedule without options."""
    given = [name for name, value in (("--timezone", timezone), ("--until", until), ("--only", only),
                                      ("--run-for", run_for)) if value is not None]
    if off and (cron or given):
        extra = ", ".join((["--cron"] if cron else []) + given)
        raise typer.BadParameter(f"--off removes the schedule; it takes no {extra}")
    if given and not cron:
        raise typer.BadParameter(f"{', '.join(given)} shape a new schedule: give them with --cron")
    with connect() as conn:
        if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
            raise no_such_campaign(campaign_id)
        if off:
            removed = remove_schedule(conn, campaign_id)
            console.print(f"campaign {campaign_id}: schedule {'removed' if removed else 'was not set'}")
            return
        if cron:
            spec = parse_cron_spec(cron, timezone)
            set_schedule(conn, campaign_id, spec, only=parse_outcomes(only),
                         until_at=parse_until(until, spec.timezone), run_for=parse_duration(run_for),
                         now=datetime.now(UTC))
        stored = get_schedule(conn, campaign_id)
    if stored is None:
        console.print(f"campaign {campaign_id} has no schedule (`--cron '0 10 * * 1-5 Europe/London'`)")
        return
    console.print(f"campaign {campaign_id}: {schedule_summary(stored)}")


@campaign_app.command("runs")
def runs_(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    as_json: bool = typer.Option(False, "--json", help="Write a JSON array instead of a table."),
) -> None:
    """Every run of the campaign with its outcomes."""
    print_runs(campaign_id, as_json=as_json)


def print_runs(campaign_id: int, only_run: int | None = None, *, as_json: bool = False) -> None:
    """The runs table (or JSON): every run, or only `only_run` (NotFound if there is no such run)."""
    with connect() as conn:
        reports = runs.list_runs(conn, campaign_id)
    if only_run is not None:
        reports = [r for r in reports if r.run_no == only_run]
        if not reports:
            raise NotFound(f"campaign {campaign_id} has no run {only_run} (see `dialer campaign runs`)")
    if as_json:
        typer.echo(json.dumps([runs.run_as_dict(r) for r in reports], default=str, indent=2))
        return
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
    campaign_id: int = typer.Argument(..., help="Campaign id."),
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
def clone(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    name: str = typer.Option(None, help="The new campaign's name"),
) -> None:
    """Copy a campaign (settings and destinations) as a new draft."""
    with connect() as conn:
        new_id = clone_campaign(conn, campaign_id, name)
    console.print(
        f"campaign {campaign_id} cloned as campaign {new_id} (draft: `dialer campaign start {new_id}`)"
    )
