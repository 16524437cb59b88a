"""`dialer account …`: provider accounts. Tokens go in encrypted and never come out; `add` and `show` print
what to set in the provider's console (VoIPbin: the webhook URL and secret to paste), `test` checks the
credentials and DIALER_PUBLIC_URL without dialing."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from campaigns import circuits
from campaigns.account_health import circuit_views
from campaigns.accounts import (
    add_account,
    list_accounts,
    read_account,
    remove_account,
    resolve_account_id,
    update_account,
)
from campaigns.db import connect
from workers.callbacks.account_setup import account_console_setup
from workers.entrypoints.account_check import check_account
from workers.entrypoints.cli_campaign import one_of
from workers.entrypoints.cli_circuits import retry_text, when, why
from workers.entrypoints.cli_webhooks import NOTIFY_URL_HELP, apply_notify_url
from workers.providers.console_setup import ConsoleSetup
from workers.providers.credentials_check import Verdict
from workers.providers.registry import PROVIDERS

account_app = typer.Typer(
    help=f"Provider accounts ({', '.join(sorted(PROVIDERS))}).", no_args_is_help=True
)
console = Console()


def _options(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--options must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--options must be a JSON object")
    return value


def _with_named_options(
    options: dict[str, Any] | None, api_username: str | None, application_id: str | None,
    time_zone: str | None, hangup_on_ring: str | None = None,
) -> dict[str, Any] | None:
    named = {"api_username": api_username, "application_id": application_id, "time_zone": time_zone,
             "hangup_on_ring": hangup_on_ring}
    given = {k: v for k, v in named.items() if v is not None}
    if not given:
        return options
    return {**(options or {}), **given}


def _print_setup(setup: ConsoleSetup, name: str, *, reveal_secrets: bool) -> None:
    # Plain echo, not rich: a URL to paste must not be wrapped or read as markup.
    for line in setup.lines(reveal_secrets=reveal_secrets):
        typer.echo(line.replace("NAME", name))


@account_app.command("add")
def add(
    name: str = typer.Argument(..., help="A name of your choosing for the account."),
    provider: str = typer.Option(..., help=", ".join(sorted(PROVIDERS))),
    auth_id: str = typer.Option(..., help="Account id (Plivo/Vobiz auth id, Bandwidth account id…)"),
    auth_token: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        envvar="DIALER_PROVIDER_TOKEN",
        help="API token; prompted for when not given",
    ),
    cps: float = typer.Option(..., help="Calls per second the carrier allows this account"),
    max_concurrent: int = typer.Option(..., help="Live calls the carrier allows at once"),
    base_url: str = typer.Option(
        None, help="API base URL (default: the provider's; the simulator's for dry runs)"
    ),
    webhook_secret: str = typer.Option(
        None, help="VoIPbin: the webhook secret set in its console, if any (then webhooks must be signed)"
    ),
    options: str = typer.Option(None, help='Provider options as JSON, e.g. {"application_id": "…"}'),
    api_username: str = typer.Option(
        None, help="Bandwidth: the API user (its password is the token); never the account id"
    ),
    application_id: str = typer.Option(None, help="Bandwidth: the Voice application id"),
    time_zone: str = typer.Option(
        None, "--timezone",
        help="Plivo/Vobiz: the console's time zone, in which callback times are written (default UTC)"
    ),
    time_zone_alias: str = typer.Option(None, "--time-zone", hidden=True, help="Old name of --timezone."),
    hangup_on_ring: str = typer.Option(
        None, help="Vobiz: what its hangup_on_ring bounds, 'call' (ringing and talk: the default, safe "
        "either way) or 'ring' (ringing only: then it is sent the ring timeout alone)"
    ),
    notify_url: str = typer.Option(None, help=NOTIFY_URL_HELP),
) -> None:
    """Add a provider account, and print what to set in the provider's console (VoIPbin: the webhook URL
    and secret to paste there; the others: nothing) and what else matters. Then `dialer account test NAME`."""
    zone = one_of("--timezone", time_zone, "--time-zone", time_zone_alias)
    merged = _with_named_options(_options(options), api_username, application_id, zone, hangup_on_ring)
    with connect() as conn:
        account_id = add_account(
            conn,
            name=name,
            provider=provider,
            auth_id=auth_id,
            auth_token=auth_token,
            cps=cps,
            max_concurrent=max_concurrent,
            base_url=base_url,
            webhook_secret=webhook_secret,
            options=merged,
        )
        apply_notify_url(conn, notify_url, account_id=account_id)
        conn.commit()
    console.print(f"account {account_id} ({name}, {provider}) added")
    _print_setup(account_console_setup(provider, account_id, webhook_secret), name, reveal_secrets=True)
    typer.echo(f"next: `dialer account test {name}` checks the credentials and DIALER_PUBLIC_URL "
               "(nothing is dialed)")


@account_app.command("show")
def show(name: str = typer.Argument(..., help="Account name or id.")) -> None:
    """Show an account (never its token) and what to set in the provider's console, secret included."""
    with connect() as conn:
        shown_name, account = read_account(conn, name)
        (summary,) = [a for a in list_accounts(conn) if a.id == account.account_id]
    typer.echo(f"account {summary.id}: {shown_name} ({summary.provider})")
    typer.echo(f"  auth id: {summary.auth_id}")
    typer.echo(f"  base url: {summary.base_url}")
    typer.echo(f"  cps: {summary.cps:g}   max concurrent: {summary.max_concurrent}")
    typer.echo(f"  options: {json.dumps(summary.options, sort_keys=True)}")
    typer.echo(f"  webhook secret: {'set' if account.webhook_secret else 'none'}")
    setup = account_console_setup(account.provider, account.account_id, account.webhook_secret)
    _print_setup(setup, shown_name, reveal_secrets=True)


@account_app.command("test")
def test(name: str = typer.Argument(..., help="Account name or id.")) -> None:
    """Check the account's credentials with one harmless authenticated request (nothing is dialed) and
    DIALER_PUBLIC_URL as far as this host can tell; exit 1 naming what is wrong."""
    with connect() as conn:
        result = check_account(conn, name)
    typer.echo(f"account {result.name} ({result.provider}); credentials checked by {result.probe_source}")
    for finding in result.findings:
        typer.echo(f"{finding.verdict.value.upper():8} {finding.check}: {finding.message}")
    _print_setup(result.console, result.name, reveal_secrets=False)
    if not result.ok:
        problems = sum(f.verdict == Verdict.PROBLEM for f in result.findings)
        typer.echo(f"account {result.name}: {problems} problem(s) above", err=True)
        raise typer.Exit(1)


@account_app.command("list")
def list_() -> None:
    """List accounts (without their tokens), each with its circuit breaker: closed (takes attempts), open
    (takes none: why, since when, until when) or half_open (being probed)."""
    with connect() as conn:
        accounts = list_accounts(conn)
        views = circuit_views(conn, [a.id for a in accounts])
    table = Table("id", "name", "provider", "auth id", "base url", "cps", "max concurrent", "circuit", "why",
                  "since", "retry at")
    for a in accounts:
        c = views[a.id]
        table.add_row(
            str(a.id), a.name, a.provider, a.auth_id, a.base_url, f"{a.cps:g}", str(a.max_concurrent),
            c.state.value, why(c), when(c.since), retry_text(c),
        )
    console.print(table)


@account_app.command("disable")
def disable(
    name: str = typer.Argument(..., help="Account name or id."),
    reason: str = typer.Option("disabled by operator", help="Why, shown with the account's circuit."),
) -> None:
    """Open the account's circuit: it takes no new attempts (its campaigns fail over to their next account,
    or wait) until `dialer account enable`. Calls in progress finish."""
    with connect() as conn:
        account_id = resolve_account_id(conn, name)
        changed = circuits.disable(conn, account_id, reason.strip() or "disabled by operator")
        conn.commit()
    console.print(f"account {name} disabled" if changed else f"account {name} was already disabled")


@account_app.command("enable")
def enable(name: str = typer.Argument(..., help="Account name or id.")) -> None:
    """Close the account's circuit, whatever opened it: it takes attempts again at once."""
    with connect() as conn:
        account_id = resolve_account_id(conn, name)
        changed = circuits.enable(conn, account_id)
        conn.commit()
    console.print(f"account {name} enabled" if changed else f"account {name} was not disabled (closed)")


@account_app.command("update")
def update(
    name: str = typer.Argument(..., help="Account name or id."),
    cps: float = typer.Option(None, help="Calls per second the carrier allows this account"),
    max_concurrent: int = typer.Option(None, help="Live calls the carrier allows at once"),
    base_url: str = typer.Option(None, help="API base URL (the simulator's for dry runs)"),
    auth_token: str = typer.Option(None, envvar="DIALER_PROVIDER_TOKEN",
                                   help="A new auth token (or DIALER_PROVIDER_TOKEN)"),
    options: str = typer.Option(None, help="JSON object merged into the account's options"),
    api_username: str = typer.Option(None, help="Bandwidth: the API user"),
    application_id: str = typer.Option(None, help="Bandwidth: the Voice application id"),
    time_zone: str = typer.Option(None, "--timezone", help="Plivo/Vobiz: the console's time zone"),
    time_zone_alias: str = typer.Option(None, "--time-zone", hidden=True, help="Old name of --timezone."),
    hangup_on_ring: str = typer.Option(None, help="Vobiz: 'call' or 'ring', what its hangup_on_ring bounds"),
    webhook_secret: str = typer.Option(
        None,
        help='VoIPbin: the webhook secret set in its console ("" removes it: the URL secret then applies)',
    ),
    notify_url: str = typer.Option(None, help=NOTIFY_URL_HELP),
) -> None:
    """Change an account's limits, URL, token, webhook secret or options."""
    zone = one_of("--timezone", time_zone, "--time-zone", time_zone_alias)
    merged = _with_named_options(_options(options), api_username, application_id, zone, hangup_on_ring)
    with connect() as conn:
        update_account(
            conn,
            name,
            cps=cps,
            max_concurrent=max_concurrent,
            base_url=base_url,
            auth_token=auth_token,
            options=merged,
            webhook_secret=webhook_secret,
        )
        apply_notify_url(conn, notify_url, account_id=resolve_account_id(conn, name))
        conn.commit()
    console.print(f"account {name} updated")


@account_app.command("remove")
def remove(name: str = typer.Argument(..., help="Account name or id.")) -> None:
    """Remove an account no campaign uses."""
    with connect() as conn:
        remove_account(conn, name)
        conn.commit()
    console.print(f"account {name} removed")
