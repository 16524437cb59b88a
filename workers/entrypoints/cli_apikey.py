"""`dialer apikey create NAME --role R [--account A …] | list | revoke ID`: keys for the operators' HTTP API.

The role has no default: a key that could do more than its holder needs is worse than a command that asks
(docs/SECURITY.md, "API keys have a scope")."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from campaigns.api_keys import Role, create_api_key, list_api_keys, revoke_api_key
from campaigns.db import connect

apikey_app = typer.Typer(help="API keys for the HTTP API (Authorization: Bearer KEY).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


@apikey_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what the key is for."),
    role: Role = typer.Option(..., "--role", case_sensitive=False,
                              help="admin: everything, accounts and keys included; operator: run the "
                                   "campaigns, DNC lists and caps of its accounts; viewer: read them."),
    accounts: list[str] = typer.Option([], "--account",
                                       help="A provider account (name or id) an operator or viewer key "
                                            "reaches; repeat for more. None for admin."),
) -> None:
    """Create a key and print it once: only its hash is stored."""
    with connect() as conn:
        new = create_api_key(conn, name=name, role=role, accounts=accounts)
        conn.commit()
    # The key alone on stdout, so `KEY=$(dialer apikey create ops --role …)` works; the notes go to stderr.
    typer.echo(new.key)
    scope = f"{role.value} of {', '.join(accounts)}" if accounts else role.value
    err.print(f"API key {new.id} ({escape(new.name)}, {escape(scope)}) created.\n"
              "Store it now: it cannot be shown again.\nUse it as: Authorization: Bearer <key>",
              soft_wrap=True)  # unwrapped, so the notes read the same on any terminal width


@apikey_app.command("list")
def list_() -> None:
    """Keys by id, with their role, accounts, and when they were created and revoked (never the keys)."""
    with connect() as conn:
        keys = list_api_keys(conn)
    if not keys:
        console.print("no API keys (create one with `dialer apikey create NAME --role ROLE`)")
        return
    # Names and accounts are identifiers: a narrow terminal wraps them, never cuts them to "scope-a-d2…".
    table = Table("id", Column("name", overflow="fold"), "role", Column("accounts", overflow="fold"),
                  "created", "revoked")
    for key in keys:
        table.add_row(str(key.id), escape(key.name), key.role.value,
                      escape("\n".join(key.accounts)) if key.role is not Role.ADMIN else "all",
                      f"{key.created_at:%Y-%m-%d %H:%M:%S %Z}",
                      f"{key.revoked_at:%Y-%m-%d %H:%M:%S %Z}" if key.revoked_at else "-")
    console.print(table)


@apikey_app.command("revoke")
def revoke(key_id: int = typer.Argument(..., help="Key id, from `dialer apikey list`.")) -> None:
    """Revoke a key: requests carrying it get 401 from now on."""
    with connect() as conn:
        revoked_at = revoke_api_key(conn, key_id)
        conn.commit()
    console.print(f"API key {key_id} revoked ({revoked_at:%Y-%m-%d %H:%M:%S %Z})")
