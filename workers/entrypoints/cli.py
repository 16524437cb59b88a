"""`dialer`: the command line, one sub-command group per noun. Errors become one clear line."""

from __future__ import annotations

import sys
from dataclasses import replace
from importlib.metadata import version as package_version
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from campaigns.config import get_settings
from campaigns.db import SCHEMA_ERRORS, _redacted, init_database, schema_missing
from campaigns.errors import DialerError
from simulator.cli import run_simulator
from workers.entrypoints import (
    cli_campaign_control,  # noqa: F401  (registers run/watch commands on campaign_app)
    cli_campaign_results,  # noqa: F401  (registers results on campaign_app)
    cli_campaign_retire,  # noqa: F401  (registers archive/delete on campaign_app)
    cli_campaign_runs,  # noqa: F401  (registers schedule/runs/rerun/clone on campaign_app)
    cli_processes,
)
from workers.entrypoints.cli_account import account_app
from workers.entrypoints.cli_apikey import apikey_app
from workers.entrypoints.cli_campaign import campaign_app
from workers.entrypoints.cli_dnc import caps as account_caps_command
from workers.entrypoints.cli_dnc import dnc_app
from workers.entrypoints.cli_prune import prune_command
from workers.entrypoints.cli_secrets import secrets_app
from workers.entrypoints.cli_webhooks import webhooks_app
from workers.entrypoints.demo import DemoSettings, demo_auth_id, run_demo
from workers.entrypoints.demo_failover import FailoverSettings, run_failover_demo

app = typer.Typer(help="Bulk-dialing campaign worker.", no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="The Postgres database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(account_app, name="account")
app.add_typer(apikey_app, name="apikey")
app.add_typer(secrets_app, name="secrets")
app.add_typer(dnc_app, name="dnc")
app.add_typer(webhooks_app, name="webhooks")
account_app.command("caps")(account_caps_command)
app.command("worker")(cli_processes.worker)
app.command("beat")(cli_processes.beat)
app.command("api")(cli_processes.api)
app.command("flower")(cli_processes.flower)
app.command("prune")(prune_command)

err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dialer {package_version('dialer')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """Bulk-dialing campaign worker."""


@db_app.command("init")
def db_init() -> None:
    """Create the database if absent and apply schema.sql (idempotent)."""

    created = init_database()
    url = _redacted(get_settings().database_url)
    typer.echo(f"{'created' if created else 'updated'} database {url}")


@app.command("simulator")
def simulator(
    config: str = typer.Option(None, help="JSON file of accounts, limits, outcome mix and faults."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port to listen on."),
    speed: float = typer.Option(1.0, help="Time scale: 60 makes a 30 s call take 0.5 s."),
    seed: int = typer.Option(1, help="Seed of the outcome and fault draws (the same seed, the same calls)."),
    arrival_jitter_ms: str = typer.Option(
        None, envvar="SIMULATOR_ARRIVAL_JITTER_MS", metavar="MEAN,SPREAD",
        help="Network delay before the carrier's limiter counts an arrival, uniform in mean ± spread ms.",
    ),
) -> None:
    """Run the local carrier simulator (Plivo, Vobiz, TryVox, VoIPbin, Bandwidth call APIs)."""

    run_simulator(config=config, host=host, port=port, speed=speed, seed=seed,
                  arrival_jitter_ms=arrival_jitter_ms)


@app.command("demo")
def demo(
    cps: int = typer.Option(
        None, help="Calls per second of the simulated carrier account (100; with --failover, 20 each)"
    ),
    rows: int = typer.Option(None, help="Dial only the first N rows of the sample (with --failover, 500)"),
    workers: int = typer.Option(2, help="Celery worker processes"),
    results: str = typer.Option("demo-results.csv", help="Where to write the results CSV"),
    provider: str = typer.Option(
        None, help="Simulated carrier: plivo (default), vobiz, tryvox, voipbin or bandwidth"
    ),
    failover: bool = typer.Option(
        False, "--failover", help="Two carriers: the primary (plivo) fails mid-campaign, the backup (tryvox) "
        "takes over, the primary takes the campaign back once it recovers"
    ),
) -> None:
    """Run the whole pipeline against the simulator with the shipped 10,000-row sample, then stop it all."""

    if failover:
        _failover_demo(cps, rows, workers, provider)
        return
    settings = DemoSettings(cps=100 if cps is None else cps, rows=rows, workers=workers,
                            results_csv=Path(results))
    if provider is not None:
        try:
            demo_auth_id(provider)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        settings = replace(settings, provider=provider)
    run_demo(settings)


def _failover_demo(cps: int | None, rows: int | None, workers: int, provider: str | None) -> None:
    """`dialer demo --failover`; exits 1 when the backup did not take over, someone was dialed twice or a
    carrier answered 429."""
    if provider is not None:
        raise typer.BadParameter("--failover dials plivo, then tryvox: it takes no --provider")
    settings = FailoverSettings(workers=workers)
    if cps is not None:
        settings = replace(settings, cps=cps)
    if rows is not None:
        settings = replace(settings, rows=rows)
    summary = run_failover_demo(settings).summary
    if summary is None or not summary.backup_took_over or summary.dialed_twice or any(
        summary.throttled.values()
    ):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except DialerError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except SCHEMA_ERRORS as exc:  # a command run before `dialer db init`
        missing = schema_missing(get_settings().psycopg_url, str(exc).splitlines()[0])
        err.print(f"[red]error:[/red] {escape(str(missing))}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
