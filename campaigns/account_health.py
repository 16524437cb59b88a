"""What is shown of an account's circuit breaker (campaigns.circuits stores it): its state, why, since when
and, for an open one, when it is tried again; and for a campaign, each of its accounts in order with its
latest changes. `dialer campaign status` (and --follow), GET /campaigns/{id} and the console's campaign page
all read `CampaignStatus.accounts` (campaigns.control.status builds it here); `dialer account list`,
GET /accounts and the console's accounts page read `circuit_views`. Nothing here names a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg
from pydantic import BaseModel, ConfigDict, Field

from campaigns.campaign_accounts import accounts_of
from campaigns.circuits import Circuit, changes_by_account, circuits_of
from campaigns.states import CircuitState

CHANGES_SHOWN = 5  # the latest changes of each account a campaign's status carries


class CircuitChangeView(BaseModel):
    """One change of an account's circuit (a row of `account_circuit_change`)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    state: CircuitState
    cause: str | None = None  # campaigns.circuit_rules.Cause; None when it closed
    reason: str | None = None


class CircuitView(BaseModel):
    """An account's circuit now. `since` is None for one that never changed (closed from the start);
    an open one with no `retry_at` stays open until an operator's `dialer account enable`."""

    model_config = ConfigDict(frozen=True)

    state: CircuitState = CircuitState.CLOSED
    cause: str | None = None
    reason: str | None = None
    since: datetime | None = None
    retry_at: datetime | None = None  # open: when it goes half-open; half-open: when probes are sent again


class AccountHealth(CircuitView):
    """One of a campaign's accounts, in the campaign's order (0: its primary), with its circuit."""

    account_id: int
    name: str
    provider: str
    position: int  # 0 is the primary, 1 the first fallback…
    changes: list[CircuitChangeView] = Field(default_factory=list)  # newest first

    @property
    def role(self) -> str:
        return "primary" if self.position == 0 else f"fallback {self.position}"


def circuit_view(circuit: Circuit) -> CircuitView:
    # A closed circuit keeps the reason it closed for ("enabled by operator", "3 probes passed"): shown.
    return CircuitView(state=circuit.state, cause=circuit.cause, reason=circuit.reason,
                       since=circuit.changed_at,
                       retry_at=circuit.retry_at if circuit.state != CircuitState.CLOSED else None)


def circuit_views(conn: psycopg.Connection, account_ids: Iterable[int]) -> dict[int, CircuitView]:
    """Each account's circuit as shown (closed where none is stored)."""
    return {account_id: circuit_view(c) for account_id, c in circuits_of(conn, account_ids).items()}


def latest_changes(conn: psycopg.Connection, account_ids: Iterable[int],
                   limit: int = CHANGES_SHOWN) -> dict[int, list[CircuitChangeView]]:
    return {account_id: [CircuitChangeView(at=c.changed_at, state=c.state, cause=c.cause, reason=c.reason)
                         for c in changes]
            for account_id, changes in changes_by_account(conn, account_ids, limit).items()}


def campaign_accounts_health(conn: psycopg.Connection, campaign_id: int,
                             changes: int = CHANGES_SHOWN) -> list[AccountHealth]:
    """The campaign's accounts, primary first, each with its circuit and its latest `changes`."""
    ids = accounts_of(conn, campaign_id)
    if not ids:
        return []
    names = {r[0]: (r[1], r[2]) for r in conn.execute(
        "SELECT id, name, provider FROM provider_account WHERE id = ANY(%s)", (ids,)).fetchall()}
    views = circuit_views(conn, ids)
    history = latest_changes(conn, ids, changes)
    return [AccountHealth(account_id=a, name=names[a][0], provider=names[a][1], position=position,
                          changes=history[a], **views[a].model_dump())
            for position, a in enumerate(ids) if a in names]


def describe_circuit(view: CircuitView) -> str:
    """One line for an operator: "open (auth: 401 Unauthorized) since 12:03:04, retry 12:04:04"."""
    text = view.state.value
    why = ": ".join(part for part in (view.cause, view.reason) if part)
    if why and view.state != CircuitState.CLOSED:
        text += f" ({why})"
    if view.since is not None:
        text += f" since {view.since:%Y-%m-%d %H:%M:%S}"
    if view.state == CircuitState.OPEN:
        text += f", retry {view.retry_at:%H:%M:%S}" if view.retry_at else ", until enabled"
    return text
