"""`dialer campaign set`'s account flags (--account, --fallback-account, --account-caller-id, --no-fallbacks)
read into the change campaigns.control.configure checks and applies (campaigns.account_list_rules), and
`dialer campaign attempts`: one destination's attempts, each with the account that placed it."""

from __future__ import annotations

import json

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from campaigns.account_list_rules import AccountsChange, CallerIdChoice, NamedAccount
from campaigns.accounts import resolve_account_id
from campaigns.attempt_history import destination_attempts
from campaigns.db import connect
from campaigns.errors import NotFound
from campaigns.settings_rules import InvalidSetting
from workers.entrypoints.cli_campaign import campaign_app

console = Console()


def _named(conn: psycopg.Connection, flag: str, given: str) -> NamedAccount:
    try:
        return NamedAccount(resolve_account_id(conn, given), given, flag)
    except NotFound as exc:
        raise InvalidSetting(flag, str(exc)) from None


def accounts_change(conn: psycopg.Connection, *, account: str | None, fallbacks: list[str] | None,
                    caller_ids: list[str] | None, no_fallbacks: bool) -> AccountsChange | None:
    """The flags as a change of the campaign's accounts (None: they change nothing)."""
    if no_fallbacks and fallbacks:
        raise typer.BadParameter("--no-fallbacks drops every fallback; give it without --fallback-account")
    choices = []
    for item in caller_ids or []:
        given, sep, caller_id = item.partition("=")
        if not sep or not given.strip() or not caller_id.strip():
            raise typer.BadParameter(f"--account-caller-id takes ACCOUNT=CALLER_ID, not {item!r}")
        try:
            account_id: int | None = resolve_account_id(conn, given.strip())
        except NotFound:
            account_id = None  # the rules say it is not one of the campaign's accounts
        choices.append(CallerIdChoice(account_id, given.strip(), caller_id.strip(), "--account-caller-id"))
    change = AccountsChange(
        primary=_named(conn, "--account", account) if account else None,
        fallbacks=[] if no_fallbacks else [_named(conn, "--fallback-account", f) for f in fallbacks]
        if fallbacks else None,
        caller_ids=choices)
    return change if change.changes_anything() else None


@campaign_app.command("attempts")
def attempts(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    number: str = typer.Option(..., help="The destination's number as dialed (E.164 or sip:), or its line"),
    as_json: bool = typer.Option(False, "--json", help="Write a JSON array instead of a table."),
) -> None:
    """One destination's attempts over every run: which account placed each, its status and outcome."""
    with connect() as conn:
        found = destination_attempts(conn, campaign_id, number)
    if as_json:
        typer.echo(json.dumps([a.as_dict() for a in found], default=str, indent=2))
        return
    # An account's name is never cut, whatever the terminal's width: it is what this command is asked for.
    longest = max((len(a.account or "-") for a in found), default=7)
    table = Table("run", "attempt", Column("account", no_wrap=True, min_width=longest), "status", "outcome",
                  "sent", Column("error", overflow="fold"),
                  title=f"campaign {campaign_id} · {escape(number)}")
    for a in found:
        table.add_row(str(a.run_no), str(a.attempt_no), escape(a.account or "-"), a.status, a.outcome or "-",
                      f"{a.sent_at:%Y-%m-%d %H:%M:%S}" if a.sent_at else "-", escape(a.error or ""))
    console.print(table if found else f"no attempts at {escape(number)} yet")
