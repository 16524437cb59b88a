"""`dialer apikey create NAME | list | revoke ID`: keys for the operators' HTTP API."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from campaigns.api_keys import create_api_key, list_api_keys, revoke_api_key
from campaigns.db import connect

apikey_app = typer.Typer(help="API keys for the HTTP API (Authorization: Bearer KEY).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@apikey_app.command("create")
def create(name: str = typer.Argument(..., help="Who or what the key is for.")) -> None:
    """Create a key and print it once: only its hash is stored."""
    with connect() as conn:
        new = create_api_key(conn, name=name)
        conn.commit()
    # The key alone on stdout, so `KEY=$(dialer apikey create ops)` works; the notes go to stderr.
    typer.echo(new.key)
    err.print(f"API key {new.id} ({escape(new.name)}) created. Store it now: it cannot be shown again.\n"
              f"Use it as: Authorization: Bearer <key>")


@apikey_app.command("list")
def list_() -> None:
    """Keys by id, with when they were created and revoked (never the keys)."""
    with connect() as conn:
        keys = list_api_keys(conn)
    if not keys:
        console.print("no API keys (create one with `dialer apikey create NAME`)")
        return
    table = Table("id", "name", "created", "revoked")
    for key in keys:
        table.add_row(str(key.id), escape(key.name), f"{key.created_at:%Y-%m-%d %H:%M:%S %Z}",
                      f"{key.revoked_at:%Y-%m-%d %H:%M:%S %Z}" if key.revoked_at else "-")
    console.print(table)


@apikey_app.command("revoke")
def revoke(key_id: int = typer.Argument(..., help="Key id, from `dialer apikey list`.")) -> None:
    """Revoke a key: requests carrying it get 401 from now on."""
    with connect() as conn:
        revoked_at = revoke_api_key(conn, key_id)
        conn.commit()
    console.print(f"API key {key_id} revoked ({revoked_at:%Y-%m-%d %H:%M:%S %Z})")
