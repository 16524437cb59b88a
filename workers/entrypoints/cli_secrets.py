"""`dialer secrets rotate`: re-encrypt stored tokens under the current DIALER_SECRET_KEY."""

from __future__ import annotations

import typer
from rich.console import Console

from campaigns.db import connect
from campaigns.secret_rotation import rotate_stored_secrets

secrets_app = typer.Typer(help="Keys and stored secrets.", no_args_is_help=True)
console = Console()


@secrets_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every provider token and webhook secret under the current DIALER_SECRET_KEY.

    Rotation: set the new DIALER_SECRET_KEY, move the old one into DIALER_PREVIOUS_SECRET_KEYS, restart,
    run this, and drop the old key once the calls in flight have reported (DIALER_CALLBACK_GRACE_S past
    their time limit) and every API key has been reissued or is fine to keep under the old secret."""
    with connect() as conn:
        report = rotate_stored_secrets(conn)
        conn.commit()
    console.print(f"re-encrypted {report.values} secrets of {report.accounts} accounts under the current key")
