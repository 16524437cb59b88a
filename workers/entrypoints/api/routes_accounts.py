"""The operators' account routes: `POST /accounts/{account}/test` checks an account's credentials with one
harmless authenticated request (nothing is dialed) and DIALER_PUBLIC_URL as far as the API's host can tell,
as `dialer account test` does, and says what to set in the provider's console (secrets hidden: `dialer
account show` prints them). Needs `Authorization: Bearer <API key>` of an operator of the account (or an
admin); an account outside the key's reach is a 404, as an unknown one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from workers.entrypoints.account_check import check_account
from workers.entrypoints.api.deps import DialerRoute, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import OperatedAccount

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
