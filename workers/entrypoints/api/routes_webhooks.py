"""Outbound webhooks in the API: `PUT /accounts/{account}/notify-url` points an account's events at a URL
(admin keys only: an account's endpoint receives every campaign's events), answering the endpoint's signing
secret this once. A campaign's own endpoint is `notify_url` in `PATCH /campaigns/{id}`."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from campaigns.api_keys import Role
from campaigns.config import get_settings
from campaigns.errors import InvalidRequest
from campaigns.webhook_endpoints import MAX_URL_CHARS, set_notify_url
from workers.entrypoints.api.deps import DialerRoute, field_error, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import ApiKeyDep, OperatedAccount, require_role

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503)}
router = APIRouter(tags=["webhooks"], route_class=DialerRoute, dependencies=[Depends(require_api_key)],
                   responses=_errors)


class NotifyUrlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notify_url: str = Field(max_length=MAX_URL_CHARS, description="https URL for the events; '' removes it")


class NotifyUrlOut(BaseModel):
    account_id: int
    notify_url: str | None
    secret: str | None = Field(description="The endpoint's signing secret (whsec_…), shown this once")


def store_notify_url(conn: psycopg.Connection, url: str, *, account_id: int | None = None,
                     campaign_id: int | None = None) -> str | None:
    """set_notify_url, its refusal as a 422 naming `notify_url`."""
    try:
        return set_notify_url(conn, url=url, development=get_settings().development, account_id=account_id,
                              campaign_id=campaign_id)
    except InvalidRequest as exc:
        raise field_error("notify_url", str(exc).removeprefix("notify_url: ")) from None


@router.put("/accounts/{account}/notify-url", response_model=NotifyUrlOut)
async def put_account_notify_url(
    account_id: OperatedAccount, body: NotifyUrlIn, key: ApiKeyDep
) -> NotifyUrlOut:
    """Send every campaign's events of this account (those without their own notify_url) to this URL."""
    require_role(key, Role.ADMIN)
    secret = await run_db(lambda conn: store_notify_url(conn, body.notify_url, account_id=account_id))
    return NotifyUrlOut(account_id=account_id, notify_url=body.notify_url or None, secret=secret)
