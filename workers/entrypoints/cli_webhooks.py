"""`dialer webhooks deliveries|worker`, and the `--notify-url` of `campaign set` and `account add|update`:
where a campaign's or an account's events go (campaigns.webhook_endpoints), each endpoint's secret printed
once, when it is made."""

from __future__ import annotations

import os
from datetime import datetime

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from campaigns.config import get_settings
from campaigns.db import connect
from campaigns.webhook_endpoints import set_notify_url
from campaigns.webhook_outbox import list_deliveries
from workers.entrypoints import cli_processes
from workers.queues import WEBHOOKS_QUEUE

console = Console()
webhooks_app = typer.Typer(help="Outbound webhooks: deliveries, and the worker that sends them.",
                           no_args_is_help=True)

NOTIFY_URL_HELP = ("Send this one's events (signed, Standard Webhooks) to this URL; a new secret is printed "
                   "once. '' removes it.")


def apply_notify_url(
    conn: psycopg.Connection, url: str | None, *,
    account_id: int | None = None, campaign_id: int | None = None,
) -> None:
    """Set or remove the endpoint and print its new secret, the only time it is shown."""
    if url is None:
        return
    whose = f"account {account_id}" if account_id is not None else f"campaign {campaign_id}"
    secret = set_notify_url(conn, url=url, development=get_settings().development, account_id=account_id,
                            campaign_id=campaign_id)
    if secret is None:
        console.print(f"{whose}: no webhook endpoint now")
        return
    console.print(f"{whose}: events go to {url}")
    console.print(f"its signing secret (shown this once; verify each event with it): {secret}",
                  soft_wrap=True, highlight=False)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


@webhooks_app.command("deliveries")
def deliveries(
    campaign: int = typer.Option(None, "--campaign", help="Only this campaign's."),
    failed: bool = typer.Option(False, "--failed", help="Only those given up or still failing."),
    limit: int = typer.Option(100, min=1, max=10_000, help="At most this many, newest first."),
) -> None:
    """List webhook deliveries: event, endpoint, tries, last status, next try."""
    with connect() as conn:
        rows = list_deliveries(conn, campaign_id=campaign, failed=failed, limit=limit)
    table = Table("id", "event", "webhook-id", "campaign", "endpoint", "tries", "state", "last status",
                  "next try", "created")
    for r in rows:
        last = str(r["last_status"] or "") if r["last_status"] else (r["last_error"] or "-")
        table.add_row(str(r["id"]), r["event_type"], r["message_id"], str(r["campaign_id"] or "-"), r["url"],
                      str(r["attempts"]), r["state"], last[:60], _when(r["next_try"]), _when(r["created_at"]))
    console.print(table)


@webhooks_app.command("worker")
def worker(
    threads: int = typer.Option(2, min=1, help="Delivery passes at once (each sends at most "
                                "DIALER_WEBHOOK_CONCURRENCY requests at a time)"),
    name: str = typer.Option(None, help="Celery node name (default: webhooks-<pid>@host)"),
    loglevel: str = typer.Option("WARNING", help="Log level: WARNING, INFO or DEBUG"),
) -> None:
    """Start the worker that delivers webhooks (the `webhooks` queue only; dial workers never take it)."""
    cli_processes.worker(queues=WEBHOOKS_QUEUE, threads=threads, name=name or f"webhooks-{os.getpid()}@%h",
                         loglevel=loglevel)
