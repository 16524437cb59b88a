"""API keys on the API, for admin keys only (the same as `dialer apikey create|list|revoke`): a key is
shown once, in the answer that creates it; listing shows each key's role and accounts, never a key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from campaigns.api_keys import (
    MAX_NAME_LENGTH,
    ApiKeyIdentity,
    Role,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from campaigns.errors import NotFound
from workers.entrypoints.api.deps import DialerRoute, field_error, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import BIGINT_MAX, require_role


async def require_admin(key: Annotated[ApiKeyIdentity, Depends(require_api_key)]) -> None:
    require_role(key, Role.ADMIN)


_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503)}
router = APIRouter(prefix="/api-keys", tags=["api keys"], route_class=DialerRoute,
                   dependencies=[Depends(require_api_key), Depends(require_admin)], responses=_errors)
KeyId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="API key id")]


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, description="Who or what the key is for")
    role: Role = Field(description="admin: everything; operator: run its accounts; viewer: read them")
    accounts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default=[], max_length=1000, description="Account names or ids of an operator or viewer key")


class ApiKeyOut(BaseModel):
    id: int
    name: str
    role: Role
    accounts: list[str]  # names; empty for an admin key, which reaches every account
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreatedOut(BaseModel):
    id: int
    name: str
    role: Role
    key: str  # shown this once: only its hash is stored


def _create(conn: psycopg.Connection, body: ApiKeyIn) -> ApiKeyCreatedOut:
    try:
        new = create_api_key(conn, name=body.name, role=body.role, accounts=body.accounts)
    except NotFound as exc:  # an account named in the body: the field is at fault, not the route
        raise field_error("accounts", str(exc)) from None
    return ApiKeyCreatedOut(id=new.id, name=new.name, role=body.role, key=new.key)


def _list(conn: psycopg.Connection) -> list[ApiKeyOut]:
    return [ApiKeyOut(id=k.id, name=k.name, role=k.role, accounts=list(k.accounts), created_at=k.created_at,
                      revoked_at=k.revoked_at) for k in list_api_keys(conn)]


def _revoke(conn: psycopg.Connection, key_id: int) -> ApiKeyOut:
    revoke_api_key(conn, key_id)
    return next(k for k in _list(conn) if k.id == key_id)


@router.post("", status_code=201, response_model=ApiKeyCreatedOut)
async def create_key(body: ApiKeyIn) -> ApiKeyCreatedOut:
    """Create a key with its role and accounts; the answer is the only time the key is shown."""
    return await run_db(_create, body)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys() -> list[ApiKeyOut]:
    """Every key, revoked ones included, with its role and accounts (never the key)."""
    return await run_db(_list)


@router.delete("/{key_id}", response_model=ApiKeyOut)
async def revoke_key(key_id: KeyId) -> ApiKeyOut:
    """Revoke a key: requests carrying it get 401 from now on (revoking again keeps the first time)."""
    return await run_db(_revoke, key_id)
