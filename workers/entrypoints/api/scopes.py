"""What each API route needs of its key: a role, and that the object it names belongs to the key's accounts.

A key reaches its own accounts (an admin key every account, and what belongs to none). Whatever belongs to
an account outside its reach does not exist for it: a campaign, its runs and schedule, an account's name,
its DNC list and caps get the very answer a missing one gets (404 for a path, the field's 422 for a body
or query field), never 403, so ids of other accounts reveal nothing, not even that they exist. A key that
reaches an object but whose role is too low for the action gets 403 (a viewer starting a campaign).

Routes state their need in their signature: `campaign_id: ViewedCampaign` or `OperatedCampaign`,
`account_id: OperatedAccount`, or `require_role(key, Role.ADMIN)` / `scoped_account_id(...)` in their body
when the object is named in a field. tests/test_api_key_scopes.py walks every route of the OpenAPI with a
key of another account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import psycopg
from fastapi import Depends, Path, Request

from campaigns.accounts import no_such_account, resolve_account_id
from campaigns.api_keys import ApiKeyIdentity, Role
from campaigns.errors import NotFound
from workers.entrypoints.api.deps import ApiError, require_api_key, run_db

BIGINT_MAX = 2**63 - 1
ApiKeyDep = Annotated[ApiKeyIdentity, Depends(require_api_key)]
CampaignIdPath = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Campaign id")]
AccountPath = Annotated[str, Path(min_length=1, max_length=200, description="Account name or id")]


def require_role(key: ApiKeyIdentity, role: Role) -> None:
    """403 unless the key's role includes `role`."""
    if not key.at_least(role):
        raise ApiError(403, "forbidden", f"this API key is a {key.role.value} key; this needs {role.value}")


def no_such_campaign(campaign_id: int) -> NotFound:
    """The error for a campaign that does not exist, or that belongs to an account the key does not reach."""
    return NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")


def scoped_account_id(conn: psycopg.Connection, key: ApiKeyIdentity, account: str | int) -> int:
    """The id of the named account if the key reaches it; else the NotFound of an unknown account."""
    account_id = resolve_account_id(conn, account)
    if not key.reaches(account_id):
        raise no_such_account(account)
    return account_id


def reachable_accounts(key: ApiKeyIdentity) -> list[int] | None:
    """The account ids a listing may show; None for every account (admin)."""
    return None if key.role is Role.ADMIN else sorted(key.account_ids)


def _campaign_scope(role: Role) -> Callable[..., Awaitable[int]]:
    async def in_scope(request: Request, campaign_id: CampaignIdPath, key: ApiKeyDep) -> int:
        async with request.app.state.pool.connection(timeout=5) as conn:
            cur = await conn.execute("SELECT account_id FROM campaign WHERE id = %s", (campaign_id,))
            row = await cur.fetchone()
        if row is None or not key.reaches(row[0]):
            raise no_such_campaign(campaign_id)
        require_role(key, role)
        return campaign_id

    return in_scope


def _account_scope(role: Role) -> Callable[..., Awaitable[int]]:
    async def in_scope(account: AccountPath, key: ApiKeyDep) -> int:
        account_id = await run_db(scoped_account_id, key, account)
        require_role(key, role)
        return account_id

    return in_scope


ViewedCampaign = Annotated[int, Depends(_campaign_scope(Role.VIEWER))]
"""A campaign id from the path, of an account the key reaches (else 404)."""
OperatedCampaign = Annotated[int, Depends(_campaign_scope(Role.OPERATOR))]
"""As ViewedCampaign, and the key is an operator or admin (else 403)."""
OperatedAccount = Annotated[int, Depends(_account_scope(Role.OPERATOR))]
"""The id of the account named in the path, if the key reaches it (else 404) and may operate it (else 403)."""
