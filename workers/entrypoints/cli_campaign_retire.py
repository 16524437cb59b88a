"""`dialer campaign archive|delete`: the end of a campaign's life (campaigns.retirement)."""

from __future__ import annotations

import typer
from rich.console import Console

from campaigns.db import connect
from campaigns.retirement import archive_campaign, delete_campaign, no_such_campaign
from workers.entrypoints.cli_campaign import campaign_app

console = Console()


@campaign_app.command("archive")
def archive(campaign_id: int = typer.Argument(..., help="Campaign id.")) -> None:
    """Hide a stopped campaign from `list`, keep its results readable and free its account."""
    with connect() as conn:
        changed = archive_campaign(conn, campaign_id)
    console.print(f"campaign {campaign_id} {'archived' if changed else 'was archived already'}: its results "
                  "stay readable; `dialer campaign list --archived` lists it")


@campaign_app.command("delete")
def delete(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
) -> None:
    """Delete a stopped campaign and all of it (destinations, attempts, results, runs); DNC entries stay."""
    with connect() as conn:
        if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
            raise no_such_campaign(campaign_id)
    if not yes:
        typer.confirm(f"Delete campaign {campaign_id} and all its results? This cannot be undone", abort=True)
    with connect() as conn:
        deleted = delete_campaign(conn, campaign_id)
    console.print(f"campaign {campaign_id} deleted ({deleted.destinations:,} destinations, "
                  f"{deleted.attempts:,} attempts)")
