"""The end of a campaign's life on the API: POST /campaigns/{id}/archive and DELETE /campaigns/{id}, the
domain functions of `dialer campaign archive|delete` (campaigns.retirement). Both need an operator key of
the campaign's account (workers/entrypoints/api/scopes.py); a running campaign is a 409."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from campaigns.retirement import archive_campaign, delete_campaign
from workers.entrypoints.api.deps import DialerRoute, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import OperatedCampaign

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 503)}
router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=DialerRoute,
                   dependencies=[Depends(require_api_key)], responses=_errors)


class ArchivedOut(BaseModel):
    id: int
    archived: bool  # false: it was archived already


class DeletedOut(BaseModel):
    id: int
    destinations: int  # deleted with it
    attempts: int


@router.post("/{campaign_id}/archive", response_model=ArchivedOut)
async def archive(campaign_id: OperatedCampaign) -> ArchivedOut:
    """Hide a stopped campaign from lists, keep its results, free its account (409 while it may dial)."""
    changed = await run_db(archive_campaign, campaign_id, invalid_status=409)
    return ArchivedOut(id=campaign_id, archived=changed)


@router.delete("/{campaign_id}", response_model=DeletedOut)
async def delete(campaign_id: OperatedCampaign) -> DeletedOut:
    """Delete a stopped campaign and all of it; DNC entries stay (409 while it may dial)."""
    deleted = await run_db(delete_campaign, campaign_id, invalid_status=409)
    return DeletedOut(id=deleted.campaign_id, destinations=deleted.destinations, attempts=deleted.attempts)
