"""The operators' account routes: `POST /accounts/{account}/test` checks an account's credentials with one
harmless authenticated request (nothing is dialed) and DIALER_PUBLIC_URL as far as the API's host can tell,
as `dialer account test` does, and says what to set in the provider's console (secrets hidden: `dialer
account show` prints them). `GET /accounts` lists the key's accounts with their circuit breakers, and
`POST /accounts/{account}/disable|enable` open and close one, as `dialer account disable|enable` do.
Needs `Authorization: Bearer <API key>` of an operator of the account (or an admin; any key for the
list); an account outside the key's reach is a 404, as an unknown one."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from campaigns import circuits
from campaigns.account_health import CircuitView, circuit_views
from campaigns.accounts import list_accounts
from campaigns.api_keys import Role
from workers.entrypoints.account_check import check_account
from workers.entrypoints.api.deps import DialerRoute, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import ApiKeyDep, OperatedAccount

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 503)}
router = APIRouter(tags=["accounts"], route_class=DialerRoute, dependencies=[Depends(require_api_key)],
                   responses=_errors)


class FindingOut(BaseModel):
    check: str  # "credentials" or "public_url"
    verdict: str  # ok, warning, problem
    message: str  # what is wrong, exactly, or what was seen


class ConsoleFieldOut(BaseModel):
    name: str
    value: str  # a secret is hidden here; `dialer account show` prints it


class ConsoleSetupOut(BaseModel):
    provider: str
    nothing_to_set: bool
    fields: list[ConsoleFieldOut]
    notes: list[str]


class AccountCheckOut(BaseModel):
    account: str
    provider: str
    ok: bool  # no finding is a problem
    probe_source: str  # where the credentials request comes from: "page, <its section>" or "assumed: why"
    findings: list[FindingOut]
    console_setup: ConsoleSetupOut


@router.post("/accounts/{account}/test", response_model=AccountCheckOut)
async def test_account(account_id: OperatedAccount) -> AccountCheckOut:
    """Check the account's credentials and DIALER_PUBLIC_URL; 200 with every finding (`ok` false names
    what is wrong), 404 for an unknown account. Nothing is dialed."""
    result = await run_db(check_account, account_id)
    return AccountCheckOut.model_validate(result.as_dict())


class AccountOut(BaseModel):
    """An account as listed: never its token nor its webhook secret."""

    id: int
    name: str
    provider: str
    auth_id: str
    base_url: str
    cps: float
    max_concurrent: int
    circuit: CircuitView  # closed: takes attempts; open: takes none (why, since, retry_at); half_open: probed


def _accounts(conn: psycopg.Connection, reached: frozenset[int] | None) -> list[AccountOut]:
    shown = [a for a in list_accounts(conn) if reached is None or a.id in reached]
    views = circuit_views(conn, [a.id for a in shown])
    return [AccountOut(id=a.id, name=a.name, provider=a.provider, auth_id=a.auth_id, base_url=a.base_url,
                       cps=a.cps, max_concurrent=a.max_concurrent, circuit=views[a.id]) for a in shown]


@router.get("/accounts", response_model=list[AccountOut])
async def list_accounts_route(key: ApiKeyDep) -> list[AccountOut]:
    """The key's accounts (an admin's: every one), in id order, each with its circuit breaker."""
    reached = None if key.role is Role.ADMIN else key.account_ids
    return await run_db(_accounts, reached)


DEFAULT_REASON = "disabled by operator"


class DisableIn(BaseModel):
    reason: str = Field(DEFAULT_REASON, min_length=1, max_length=500,
                        description="Why, shown with the account's circuit")


class CircuitChangeOut(BaseModel):
    account_id: int
    changed: bool  # false: it already was in the state asked for
    circuit: CircuitView


def _disable(conn: psycopg.Connection, account_id: int, reason: str) -> CircuitChangeOut:
    changed = circuits.disable(conn, account_id, reason)
    return CircuitChangeOut(account_id=account_id, changed=changed,
                            circuit=circuit_views(conn, [account_id])[account_id])


def _enable(conn: psycopg.Connection, account_id: int) -> CircuitChangeOut:
    changed = circuits.enable(conn, account_id)
    return CircuitChangeOut(account_id=account_id, changed=changed,
                            circuit=circuit_views(conn, [account_id])[account_id])


@router.post("/accounts/{account}/disable", response_model=CircuitChangeOut)
async def disable_account(account_id: OperatedAccount, body: DisableIn | None = None) -> CircuitChangeOut:
    """Open the account's circuit until it is enabled: it takes no new attempts (its campaigns fail over to
    their next account, or wait); calls in progress finish."""
    return await run_db(_disable, account_id, body.reason if body is not None else DEFAULT_REASON)


@router.post("/accounts/{account}/enable", response_model=CircuitChangeOut)
async def enable_account(account_id: OperatedAccount) -> CircuitChangeOut:
    """Close the account's circuit, whatever opened it: it takes attempts again at once."""
    return await run_db(_enable, account_id)
