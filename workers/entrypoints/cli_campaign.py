"""`dialer campaign …`: load, inspect and control campaigns."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from campaigns.db import connect
from campaigns.describe import describe_campaign, schedule_summary
from campaigns.errors import BadInputFile, InvalidRequest, NotFound
from campaigns.listing import list_campaigns as list_campaign_rows
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.numbers import DEFAULT_BLOCKED_TYPES, RejectReason, parse_type_names
from campaigns.rejects import reject_page
from campaigns.results_export import write_rejects_csv
from campaigns.retirement import no_such_campaign
from campaigns.schedule_store import get_schedule
from campaigns.templates import list_warnings

campaign_app = typer.Typer(
    help="Campaigns: create (load a CSV), list, show, warnings, rejects; set, start, pause, resume, cancel, "
         "status, results, attempts; schedule, runs, rerun, clone; archive, delete.",
    no_args_is_help=True)

out = Console()
err = Console(stderr=True)
T = TypeVar("T")


def resolve_account_id(conn: psycopg.Connection, account: str) -> int:
    """A provider account given by id or by name."""
    if account.isdigit():
        row = conn.execute("SELECT id FROM provider_account WHERE id = %s", (int(account),)).fetchone()
    else:
        row = conn.execute("SELECT id FROM provider_account WHERE name = %s", (account,)).fetchone()
    if row is None:
        raise NotFound(f"no provider account {account!r}")
    return int(row[0])


class _LoadBar:
    """A Rich progress bar over the file's bytes, with rows, rows/s and rejects so far."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self._progress = progress
        self._started = time.monotonic()
        self._task = progress.add_task("reading", total=total, rows="0", rate="", rejected="0")

    def __call__(self, update) -> None:  # type: ignore[no-untyped-def]
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(self._task, completed=update.bytes_read, description=update.phase,
                              rows=f"{update.rows_read:,}", rate=f"{update.rows_read / elapsed:,.0f}",
                              rejected=f"{update.rows_rejected:,}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:>9}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rows]} rows, {task.fields[rate]} rows/s, "
                               "{task.fields[rejected]} rejected"),
                    TimeElapsedColumn(), console=err, transient=True)


@campaign_app.command("create")
def create(
    name: str = typer.Argument(..., help="Name of the new campaign."),
    csv_path: Path = typer.Option(..., "--csv", exists=True, dir_okay=False, readable=True,
                                  help="CSV file: a header row and a phone column."),
    phone_column: str = typer.Option(None, help="Name of the phone column (default: found by name)."),
    default_region: str = typer.Option("US", help="Region for numbers written without +country code."),
    account: str = typer.Option(None, help="Provider account, by name or id (may be set later)."),
    caller_id: str = typer.Option(None, help="Caller ID (E.164 or national in the default region)."),
    default_timezone: str = typer.Option("UTC", "--timezone",
                                         help="Zone of sip: URIs and numbers of unknown zone."),
    block_types: str = typer.Option(",".join(sorted(DEFAULT_BLOCKED_TYPES)),
                                    help="Number types rejected as blocked_type, comma-separated."),
    workers: int = typer.Option(None, help="Parser processes (default: DIALER_LOADER_WORKERS)."),
    message: str = typer.Option(None, help="What an answered call hears; {column} is filled from each row."),
) -> None:
    """Create a campaign from a CSV (all rows or nothing); rows that cannot be dialed become rejects."""

    try:
        blocked = parse_type_names(block_types)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    account_id = None
    if account:
        with connect() as conn:
            account_id = resolve_account_id(conn, account)
    options = LoadOptions(default_region=default_region, phone_column=phone_column, account_id=account_id,
                          caller_id=caller_id, blocked_types=blocked, default_timezone=default_timezone,
                          workers=workers, message=message)
    try:
        with _progress() as progress:
            report = load_campaign_csv(name=name, source=csv_path, options=options,
                                       progress=_LoadBar(progress, csv_path.stat().st_size))
    except BadInputFile as exc:
        err.print(f"[red]refused ({exc.reason}):[/red] {exc}; nothing was loaded")
        raise typer.Exit(1) from None
    out.print(f"campaign [bold]{report.campaign_id}[/bold] {escape(repr(report.name))} created (draft) in "
              f"{report.seconds:.1f} s: {report.rows_loaded:,} of {report.rows_total:,} rows loaded, "
              f"{report.rows_rejected:,} rejected")
    out.print(f"read as {report.encoding}, delimiter {report.delimiter!r}, "
              f"phone column {escape(repr(report.phone_column))}")
    if report.rejects_by_reason:
        table = Table("reason", "rows", title="rejected rows")
        for reason, count in sorted(report.rejects_by_reason.items()):
            table.add_row(reason, f"{count:,}")
        out.print(table)
        out.print(f"see them with: dialer campaign rejects {report.campaign_id}")
    if report.rows_with_warnings:
        err.print(f"[yellow]warning:[/yellow] {report.rows_with_warnings:,} rows lack a variable of the "
                  f"message (it is left out when they are called); see them with: "
                  f"dialer campaign warnings {report.campaign_id}")


@campaign_app.command("list")
def list_campaigns(
    state: str = typer.Option(None, help="Only campaigns in this state."),
    limit: int = typer.Option(50, min=1, help="At most this many, newest first."),
    archived: bool = typer.Option(False, "--archived", help="List archived campaigns too."),
    as_json: bool = typer.Option(False, "--json", help="Write a JSON array instead of a table."),
) -> None:
    """Campaigns, newest first (archived ones only with --archived)."""
    with connect() as conn:
        rows = list_campaign_rows(conn, state=state, limit=limit, archived=archived)
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "name", "state", "destinations", "rejected", "created")
    for row in rows:
        state_ = row["state"] + (" (archived)" if row["archived_at"] else "")
        table.add_row(str(row["id"]), escape(row["name"]), state_, f"{row['rows_loaded']:,}",
                      f"{row['rows_rejected']:,}", f"{row['created_at']:%Y-%m-%d %H:%M}")
    out.print(table if rows else "no campaigns")


def _setting_lines(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """Every setting of `describe_campaign` as a label and a printable value ("-" when unset)."""
    def shown(value: Any) -> str:
        if value is None or value == [] or value == {}:
            return "-"
        if isinstance(value, dict):
            return ", ".join(f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
                             for k, v in sorted(value.items()))
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return str(value)

    retry = settings["retry_policy"]
    fallbacks = [a for a in settings["accounts"] if a["role"] == "fallback"]
    return [
        ("account", shown(settings["account"])), ("caller ID", shown(settings["caller_id"])),
        ("fallback accounts", "; ".join(f"{n}. {a['account']} (caller ID {a['caller_id'] or '-'})"
                                        for n, a in enumerate(fallbacks, start=1)) or "-"),
        ("routing", settings["routing"]),
        ("answer URL", shown(settings["answer_url"])), ("message", shown(settings["message"])),
        ("default region", settings["default_region"]),
        ("window", f"{settings['window']} "
                   f"({'in ' + settings['timezone'] if settings['timezone'] else 'each destination local'})"),
        ("days", shown(settings["days"])), ("holidays", "skipped" if settings["holidays"] else "dialed"),
        ("blackout dates", shown(settings["blackout_dates"])),
        ("start at", shown(settings["start_at"])), ("end at", shown(settings["end_at"])),
        ("CPS", shown(settings["cps"] or "the account's")),
        ("max concurrent", shown(settings["max_concurrent"] or "the account's")),
        ("weight", str(settings["weight"])),
        ("retry policy", ", ".join(f"{o}: every {r['delay_s']} s, at most {r['max_attempts']} attempts"
                                   for o, r in sorted(retry.items())) or "no retries"),
        ("provider options", shown(settings["provider_options"])),
        ("notify URL", f"{settings['notify_url']} (the {settings['notify_url_from']}'s)"
                       if settings["notify_url"] else "none (no outbound events)"),
    ]


@campaign_app.command("show")
def show(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    as_json: bool = typer.Option(False, "--json", help="Write a JSON object instead of tables."),
) -> None:
    """One campaign: state, every setting, schedule, destinations per status, rejects per reason."""
    with connect() as conn:
        info = describe_campaign(conn, campaign_id)
        stored = get_schedule(conn, campaign_id)
    if as_json:
        typer.echo(json.dumps(info, default=str, indent=2))
        return
    rows = info["rows"]
    summary = Table.grid(padding=(0, 2))
    lines = [("campaign", f"{campaign_id} {escape(repr(info['name']))}"),
             ("state", info["state"] + (f" ({info['state_reason']})" if info["state_reason"] else "")
              + (f", archived {info['archived_at'][:19]}" if info["archived_at"] else "")),
             ("created", info["created_at"][:19]),
             ("rows", f"{rows['total']:,} read, {rows['loaded']:,} loaded, {rows['rejected']:,} rejected"),
             *_setting_lines(info["settings"]),
             ("schedule", schedule_summary(stored) if stored else "-")]
    for label, value in lines:
        summary.add_row(label, escape(printable(value)))
    out.print(summary)
    by_status = Table("status", "destinations", title="destinations")
    for status, count in info["destinations_by_status"].items():
        by_status.add_row(status, f"{count:,}")
    out.print(by_status)
    if info["rejects_by_reason"]:
        by_reason = Table("reason", "rows", title="rejected rows")
        for reason, count in info["rejects_by_reason"].items():
            by_reason.add_row(reason, f"{count:,}")
        out.print(by_reason)


def one_of(name: str, value: T | None, alias: str, alias_value: T | None) -> T | None:
    """An option given by its name or by its old, hidden one; both at once is refused."""
    if value is not None and alias_value is not None:
        raise typer.BadParameter(f"give {name} only ({alias} is its old name)")
    return value if value is not None else alias_value


def printable(value: str) -> str:
    """A CSV value safe for a terminal: control characters (an ANSI escape in a crafted file) shown, not
    obeyed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


@campaign_app.command("warnings")
def warnings(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    limit: int = typer.Option(100, min=1, help="At most this many, by line number."),
) -> None:
    """Rows that were loaded with a warning: a message variable their CSV row leaves empty."""

    with connect() as conn:
        if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
            raise no_such_campaign(campaign_id)
        rows = list_warnings(conn, campaign_id, limit)
    table = Table("line", "reason", "detail", title=f"load warnings of campaign {campaign_id}")
    for line_no, reason_, detail in rows:
        table.add_row(str(line_no), reason_, escape(detail))
    out.print(table if rows else "no load warnings")


@campaign_app.command("rejects")
def rejects(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    limit: int = typer.Option(100, min=1, help="At most this many rows, by line number."),
    reason: str = typer.Option(None, help="Only this reason: " + ", ".join(r.value for r in RejectReason)),
    out_path: Path = typer.Option(None, "--out", help="Write every rejected row to this CSV file instead"),
    csv_alias: Path = typer.Option(None, "--csv", hidden=True, help="Old name of --out."),
) -> None:
    """The rows of the campaign's CSV that were not loaded, with line number and reason."""
    csv_path = one_of("--out", out_path, "--csv", csv_alias)
    if csv_path is not None:
        with connect() as conn:
            if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
                raise no_such_campaign(campaign_id)
            with csv_path.open("w", newline="", encoding="utf-8") as handle:
                write_rejects_csv(conn, campaign_id, handle)
        out.print(f"rejected rows of campaign {campaign_id} written to {escape(str(csv_path))}")
        return
    with connect() as conn:
        found = reject_page(conn, campaign_id, reason=reason, limit=limit)
    rows = found.rows
    table = Table("line", "reason", "value", "detail", title=f"rejected rows of campaign {campaign_id}")
    for row in rows:
        table.add_row(str(row.line), row.reason, escape(printable(row.raw_value)),
                      escape(printable(row.detail or "")))
    out.print(table if rows else "no rejected rows")
    count = found.total
    if count > len(rows):
        out.print(f"showing {len(rows)} of {count:,}; use --limit or --reason")
