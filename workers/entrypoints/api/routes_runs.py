"""Runs on the API: a campaign's schedule (PUT/GET/DELETE), its runs, a one-off rerun, a clone, the
results of one run or all, and the load warnings of its message template. The same domain functions as
`dialer campaign schedule|runs|rerun|clone|warnings`. A viewer key reads a campaign of its accounts; an
operator changes it (workers/entrypoints/api/scopes.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from campaigns import runs
from campaigns.clone import clone_campaign
from campaigns.errors import NotFound
from campaigns.models import CampaignRunBase
from campaigns.schedule_store import StoredSchedule, get_schedule, remove_schedule, set_schedule
from campaigns.schedules import parse_cron_spec, parse_duration, parse_outcomes
from campaigns.states import RunTrigger
from campaigns.templates import list_warnings
from workers.entrypoints.api.deps import DialerRoute, require_api_key, run_db
from workers.entrypoints.api.results_download import (
    RESULTS_CONTENT,
    FormatQuery,
    chosen_format,
    results_response,
)
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import OperatedCampaign, ViewedCampaign

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody}
                                            for code in (401, 403, 404, 409, 422, 503)}
router = APIRouter(prefix="/campaigns", tags=["runs"], route_class=DialerRoute,
                   dependencies=[Depends(require_api_key)], responses=_errors)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="Five cron fields and an optional zone: '0 10 * * 1-5 Europe/London'")
    timezone: str | None = Field(None, description="The zone of the cron fields if the cron names none")
    until: AwareDatetime | None = Field(None, description="No run starts after this")
    only: list[str] | None = Field(None, description="Each run dials only these outcomes of the last")
    run_for: str | None = Field(None, description="Each run ends this long after it starts: 90m, 4h")


class RerunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: list[str] | None = Field(None, description="Outcomes to dial again (unknown, failed…); all if none")


class RunOut(CampaignRunBase):
    # The run's columns, then its counts: attempts, each destination's last outcome, destinations not dialed.
    attempts: int
    outcomes: dict[str, int]
    not_dialed: int


class RunStartedOut(BaseModel):
    campaign_id: int
    run_no: int
    destinations: int


class CloneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)


class CloneOut(BaseModel):
    id: int
    cloned_from: int


def _set(conn: psycopg.Connection, campaign_id: int, body: ScheduleIn) -> StoredSchedule:
    only = parse_outcomes(",".join(body.only)) if body.only else None
    return set_schedule(conn, campaign_id, parse_cron_spec(body.cron, body.timezone), only=only,
                        until_at=body.until, run_for=parse_duration(body.run_for), now=datetime.now(UTC))


def _get(conn: psycopg.Connection, campaign_id: int) -> StoredSchedule:
    stored = get_schedule(conn, campaign_id)
    if stored is None:
        raise NotFound(f"campaign {campaign_id} has no schedule")
    return stored


def _remove(conn: psycopg.Connection, campaign_id: int) -> None:
    if not remove_schedule(conn, campaign_id):
        raise NotFound(f"campaign {campaign_id} has no schedule")


def _rerun(conn: psycopg.Connection, campaign_id: int, body: RerunIn) -> RunStartedOut:
    only = parse_outcomes(",".join(body.only)) if body.only else None
    started = runs.start_run(conn, campaign_id, only=only, trigger=RunTrigger.RERUN)
    return RunStartedOut(**started.__dict__)


@router.put("/{campaign_id}/schedule", response_model=StoredSchedule)
async def put_schedule(campaign_id: OperatedCampaign, body: ScheduleIn) -> StoredSchedule:
    """Create or replace the campaign's recurring schedule (stored in Postgres; beat starts the runs)."""
    return await run_db(_set, campaign_id, body)


@router.get("/{campaign_id}/schedule", response_model=StoredSchedule)
async def read_schedule(campaign_id: ViewedCampaign) -> StoredSchedule:
    return await run_db(_get, campaign_id)


@router.delete("/{campaign_id}/schedule", status_code=204)
async def delete_schedule(campaign_id: OperatedCampaign) -> Response:
    """Stop the schedule; a run in progress goes on to its end."""
    await run_db(_remove, campaign_id)
    return Response(status_code=204)


@router.get("/{campaign_id}/runs", response_model=list[RunOut])
async def list_runs(campaign_id: ViewedCampaign) -> list[RunOut]:
    """Every run, oldest first: what it dialed, and each destination's last outcome in it."""
    reports = await run_db(runs.list_runs, campaign_id)
    return [RunOut(**runs.run_as_dict(r)) for r in reports]


@router.post("/{campaign_id}/rerun", response_model=RunStartedOut, status_code=201)
async def rerun(campaign_id: OperatedCampaign, body: RerunIn) -> RunStartedOut:
    """Start a new run now (409 unless the campaign is draft or completed)."""
    return await run_db(_rerun, campaign_id, body, invalid_status=409)


@router.post("/{campaign_id}/clone", response_model=CloneOut, status_code=201)
async def clone(campaign_id: OperatedCampaign, body: CloneIn) -> CloneOut:
    """A new draft campaign with the same settings and destinations."""
    new_id = await run_db(clone_campaign, campaign_id, body.name)
    return CloneOut(id=new_id, cloned_from=campaign_id)


@router.get("/{campaign_id}/runs/results", response_class=StreamingResponse, responses=RESULTS_CONTENT)
async def run_results(
    campaign_id: ViewedCampaign,
    request: Request,
    run: Annotated[int | None, Query(ge=1, description="One run (404 if no such run); all if none")] = None,
    fmt: FormatQuery = None,
) -> StreamingResponse:
    """A row per destination and run (the default results' schema): its row of the uploaded file, then
    its outcome in that run and that run's last call; CSV or JSON Lines, streamed."""
    return await results_response(campaign_id, chosen_format(fmt, request.headers.get("accept")), run=run,
                                  all_runs=run is None, name="run-results")


class LoadWarningOut(BaseModel):
    line: int
    reason: str
    detail: str


def _warnings(conn: psycopg.Connection, campaign_id: int, limit: int) -> list[LoadWarningOut]:
    if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
        raise NotFound(f"no campaign {campaign_id}")
    return [LoadWarningOut(line=line, reason=reason, detail=detail)
            for line, reason, detail in list_warnings(conn, campaign_id, limit)]


@router.get("/{campaign_id}/warnings", response_model=list[LoadWarningOut])
async def load_warnings(
    campaign_id: ViewedCampaign, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
) -> list[LoadWarningOut]:
    """Rows loaded with a warning (a message variable their CSV row leaves empty), by line."""
    return await run_db(_warnings, campaign_id, limit)
