"""`dialer dnc add|remove|import|list|export` and `dialer account caps`: do-not-call lists (the global one,
or an account's with --account) and the per-account frequency caps."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from campaigns import dnc
from campaigns.accounts import resolve_account_id
from campaigns.config import get_settings
from campaigns.csv_source import CsvLimits
from campaigns.db import connect
from campaigns.frequency_caps import set_account_caps

dnc_app = typer.Typer(
    help="Do-not-call lists: global, or one account's with --account.", no_args_is_help=True
)
console = Console(stderr=True)

ACCOUNT_HELP = "Provider account (name or id) whose list this is; without it, the global list"


def _account_id(conn, account: str | None) -> int | None:  # type: ignore[no-untyped-def]
    return resolve_account_id(conn, account) if account else None


def _which(account: str | None) -> str:
    return f"account {account}'s list" if account else "the global list"


@dnc_app.command("add")
def add(
    numbers: list[str] = typer.Argument(..., help="Numbers to add, any spelling."),
    account: str = typer.Option(None, help=ACCOUNT_HELP),
    reason: str = typer.Option(None, help="Why (kept with the entry)"),
    region: str = typer.Option("US", help="Region of numbers written without +country code"),
) -> None:
    """Add numbers (any spelling; stored in E.164). A number added mid-campaign is never called after."""
    with connect() as conn:
        account_id = _account_id(conn, account)
        for raw in numbers:
            number, added = dnc.add_number(conn, raw, account_id=account_id, reason=reason, region=region)
            console.print(f"{number}: {'added to' if added else 'already on'} {_which(account)}")
        conn.commit()


@dnc_app.command("remove")
def remove(
    numbers: list[str] = typer.Argument(..., help="Numbers to remove, any spelling."),
    account: str = typer.Option(None, help=ACCOUNT_HELP),
    region: str = typer.Option("US", help="Region of numbers written without +country code"),
) -> None:
    """Remove numbers from a list."""
    with connect() as conn:
        account_id = _account_id(conn, account)
        for raw in numbers:
            removed = dnc.remove_number(conn, raw, account_id=account_id, region=region)
            console.print(f"{raw}: {'removed from' if removed else 'was not on'} {_which(account)}")
        conn.commit()


@dnc_app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV file with a header row and a phone column."),
    account: str = typer.Option(None, help=ACCOUNT_HELP),
    reason: str = typer.Option(None, help="Why (kept with each entry)"),
    region: str = typer.Option("US", help="Region of numbers written without +country code"),
    phone_column: str = typer.Option(None, help="Default: found by name, as for campaigns"),
) -> None:
    """Import a CSV with a phone column, streamed, under the loader's limits; all of it or nothing."""
    settings = get_settings()
    limits = CsvLimits(settings.max_rows, settings.max_field_bytes, settings.max_line_bytes)
    with connect() as conn, file.open("rb") as source:
        report = dnc.import_file(
            conn,
            source,
            account_id=_account_id(conn, account),
            reason=reason,
            region=region,
            limits=limits,
            phone_column=phone_column,
        )
        conn.commit()
    console.print(
        f"{_which(account)}: {report.added} added, {report.already_listed} already listed, "
        f"{report.rejected} lines rejected"
    )
    for line_no, raw, why in report.rejects:
        console.print(f"  line {line_no}: {raw!r} {why}")


@dnc_app.command("list")
def list_(account: str = typer.Option(None, help=ACCOUNT_HELP)) -> None:
    """Print a list as CSV (number,reason,source,added_at)."""
    export(account=account, out="-")


@dnc_app.command("export")
def export(
    account: str = typer.Option(None, help=ACCOUNT_HELP),
    out: str = typer.Option("-", help="CSV file to write; - for standard output"),
) -> None:
    """Write a list as CSV; `dialer dnc import` reads it back."""
    with connect() as conn:
        entries = dnc.iter_entries(conn, account_id=_account_id(conn, account))
        if out == "-":
            count = dnc.write_csv(entries, sys.stdout)
        else:
            with open(out, "w", newline="") as handle:
                count = dnc.write_csv(entries, handle)
    console.print(f"{count} numbers on {_which(account)}")


def caps(
    account: str = typer.Argument(..., help="Account name or id."),
    per_day: int = typer.Option(None, help="Attempts per number per rolling 24 h, across campaigns"),
    per_week: int = typer.Option(None, help="Attempts per number per rolling 7 days, across campaigns"),
) -> None:
    """Set an account's frequency caps (omit both to clear them)."""
    with connect() as conn:
        set_account_caps(conn, resolve_account_id(conn, account), per_day=per_day, per_week=per_week)
        conn.commit()
    console.print(
        f"account {account}: at most {per_day or '∞'} per day, {per_week or '∞'} per week per number"
    )
