"""How the CLI shows circuit breakers (campaigns.account_health): a campaign's accounts in `dialer campaign
status` and each account's circuit in `dialer account list`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.table import Table

from campaigns.account_health import AccountHealth, CircuitView
from campaigns.states import CircuitState


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


def retry_text(view: CircuitView) -> str:
    """When an open circuit is tried again ("until enabled" after an operator's disable)."""
    if view.state == CircuitState.CLOSED:
        return "-"
    return when(view.retry_at) if view.retry_at is not None else "until enabled"


def why(view: CircuitView) -> str:
    return ": ".join(part for part in (view.cause, view.reason) if part) or "-"


def accounts_table(accounts: Sequence[AccountHealth]) -> Table:
    """The campaign's accounts in order, each with its circuit now."""
    table = Table(title="accounts (in order)")
    for column in ("account", "role", "circuit", "why", "since", "retry at"):
        table.add_column(column)
    for a in accounts:
        table.add_row(f"{a.name} ({a.provider})", a.role, a.state.value, why(a), when(a.since), retry_text(a))
    return table


def changes_table(accounts: Sequence[AccountHealth]) -> Table | None:
    """Each account's latest changes of circuit, newest first; None if none ever changed."""
    if not any(a.changes for a in accounts):
        return None
    table = Table(title="circuit changes (latest first)")
    for column in ("account", "at", "state", "why"):
        table.add_column(column)
    for a in accounts:
        for change in a.changes:
            reason = ": ".join(part for part in (change.cause, change.reason) if part) or "-"
            table.add_row(a.name, when(change.at), change.state.value, reason)
    return table
