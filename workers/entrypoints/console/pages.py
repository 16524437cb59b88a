"""The console's pages: sign in and out, the campaigns list with live figures, one campaign (its controls,
runs, schedule, charts, rejects and results). Actions call the functions the HTTP API's routes call
(campaigns.control, campaigns.runs, campaigns.clone, workers.housekeeping.hangup)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from psycopg.rows import dict_row

from campaigns import control, runs
from campaigns.account_listing import listed_accounts
from campaigns.accounts import list_accounts
from campaigns.api_keys import verify_api_key_async
from campaigns.clone import clone_campaign
from campaigns.db import connect
from campaigns.errors import InvalidRequest, NotFound
from campaigns.listing import LISTED_STATES
from campaigns.rejects import reject_page
from campaigns.results_export import result_chunks
from campaigns.results_schema import FILE_SUFFIXES, MEDIA_TYPES, ResultFormat
from campaigns.schedule_store import get_schedule
from campaigns.schedules import parse_outcomes
from campaigns.states import CampaignState, RunTrigger
from workers.entrypoints.api.deps import run_db
from workers.entrypoints.console.chart_data import campaign_charts
from workers.entrypoints.console.figures import READINGS, campaign_lines
from workers.entrypoints.console.session import (
    ConsoleUser,
    check_csrf,
    clear_cookie,
    new_session,
    require_role,
    session_user,
    set_cookie,
)
from workers.entrypoints.console.web import (
    ConsoleRoute,
    UserDep,
    page,
    reached_accounts,
    redirect_with_flash,
    safe_next,
)
from workers.housekeeping.hangup import hang_up_live_calls
from workers.providers.http import make_client

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
C = CampaignState
ACTIONS = ("start", "pause", "resume", "cancel", "rerun", "clone")
REJECTS_SHOWN = 100


@router.get("")
@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/campaigns", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", await session_user(request), next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "") -> Response:
    async with request.app.state.pool.connection(timeout=5) as conn:
        holder = await verify_api_key_async(conn, key.strip()) if key.strip() else None
    if holder is None:
        return page(request, "login.html", None, 401, next=safe_next(next),
                    error="unknown or revoked API key")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(response, new_session(holder))
    return response


@router.post("/logout")
async def logout(user: UserDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(user, csrf)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_cookie(response)
    return response


def _filters(state: str | None, account: str | None) -> tuple[str | None, int | None]:
    chosen_state = state if state in LISTED_STATES else None
    account_id = int(account) if account and account.isdigit() else None
    return chosen_state, account_id


def _campaigns(conn: psycopg.Connection, user: ConsoleUser, state: str | None,
               account_id: int | None) -> dict[str, Any]:
    accounts = reached_accounts(conn, user)
    return {"lines": campaign_lines(conn, state=state, account_id=account_id, within_accounts=user.accounts),
            "accounts": {a.id: a.name for a in accounts}}


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns_page(request: Request, user: UserDep, state: str | None = None,
                         account: str | None = None) -> Response:
    chosen_state, account_id = _filters(state, account)
    data = await run_db(_campaigns, user, chosen_state, account_id)
    return page(request, "campaigns.html", user, states=LISTED_STATES, state=chosen_state,
                account_id=account_id, **data)


@router.get("/campaigns/rows", response_class=HTMLResponse)
async def campaigns_rows(request: Request, user: UserDep, state: str | None = None,
                         account: str | None = None) -> Response:
    """The campaigns table's body, refreshed by console.js every second or two."""
    chosen_state, account_id = _filters(state, account)
    data = await run_db(_campaigns, user, chosen_state, account_id)
    return page(request, "_campaign_rows.html", user, **data)


def _campaign_row(conn: psycopg.Connection, user: ConsoleUser, campaign_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM campaign WHERE id = %s AND state <> %s",
                          (campaign_id, C.LOADING.value)).fetchone()
    if row is None or not user.reaches(row["account_id"]):
        raise NotFound(f"no campaign {campaign_id}")  # one outside the key's accounts is not shown to exist
    return row


def _campaign(conn: psycopg.Connection, user: ConsoleUser, campaign_id: int) -> dict[str, Any]:
    row = _campaign_row(conn, user, campaign_id)
    progress = READINGS.read(conn, campaign_id)
    account = next((a for a in list_accounts(conn) if a.id == row["account_id"]), None)
    rejects = reject_page(conn, campaign_id, limit=REJECTS_SHOWN).rows
    # Its accounts' circuits, without any the key does not reach (a fallback an admin set): the API's rule.
    health = [h for h in progress.latest.status.accounts if user.reaches(h.account_id)]
    return {"campaign": row, "live": progress.rows(), "status": progress.latest.status, "accounts": health,
            "caller_ids": {a.account_id: a.caller_id for a in listed_accounts(conn, campaign_id)},
            "account": account, "runs": runs.list_runs(conn, campaign_id),
            "schedule": get_schedule(conn, campaign_id), "rejects": rejects,
            "charts": campaign_charts(conn, campaign_id, progress.latest.cps_budget)}


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(request: Request, user: UserDep, campaign_id: int) -> Response:
    data = await run_db(_campaign, user, campaign_id)
    return page(request, "campaign.html", user, **data)


@router.get("/campaigns/{campaign_id}/live", response_class=HTMLResponse)
async def campaign_live(request: Request, user: UserDep, campaign_id: int) -> Response:
    def read(conn: psycopg.Connection) -> dict[str, Any]:
        row = _campaign_row(conn, user, campaign_id)
        progress = READINGS.read(conn, campaign_id)
        return {"campaign": row, "live": progress.rows(), "status": progress.latest.status}

    return page(request, "_live.html", user, **await run_db(read))


@router.get("/campaigns/{campaign_id}/charts", response_class=HTMLResponse)
async def campaign_charts_fragment(request: Request, user: UserDep, campaign_id: int) -> Response:
    def read(conn: psycopg.Connection) -> dict[str, str]:
        _campaign_row(conn, user, campaign_id)
        return campaign_charts(conn, campaign_id, READINGS.read(conn, campaign_id).latest.cps_budget)

    return page(request, "_charts.html", user, charts=await run_db(read))


def _act(conn: psycopg.Connection, user: ConsoleUser, campaign_id: int, action: str,
         form: dict[str, str]) -> str:
    """Do one action as the API's route does; returns what to tell the operator."""
    _campaign_row(conn, user, campaign_id)
    if action == "start":
        control.start(conn, campaign_id)
        return "started"
    if action == "pause":
        control.pause(conn, campaign_id)
        return "paused"
    if action == "resume":
        control.resume(conn, campaign_id)
        return "resumed"
    if action == "cancel":
        cancelled = control.cancel(conn, campaign_id)
        note = f"cancelled: {cancelled} destinations not dialed"
        if form.get("hangup"):
            with make_client() as client:
                report = hang_up_live_calls(conn, client, campaign_id)
            note += f"; hang-up asked for {report.requested} live calls"
        return note
    if action == "rerun":
        only = parse_outcomes(form["only"]) if form.get("only", "").strip() else None
        started = runs.start_run(conn, campaign_id, only=only, trigger=RunTrigger.RERUN)
        return f"run {started.run_no} started with {started.destinations} destinations"
    new_id = clone_campaign(conn, campaign_id, form.get("name") or None)
    return f"cloned as campaign {new_id}"


@router.post("/campaigns/{campaign_id}/{action}")
async def campaign_action(request: Request, user: UserDep, campaign_id: int, action: str) -> Response:
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r}")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    check_csrf(user, form.get("csrf"))
    require_role(user, "operator")
    target = f"/ui/campaigns/{campaign_id}"
    try:
        note = await run_db(_act, user, campaign_id, action, form)
    except InvalidRequest as exc:  # the state forbids it now, or a bad argument: the domain's own words
        return redirect_with_flash(user, target, "error", str(exc))
    return redirect_with_flash(user, target, "done", note)


def _result_bytes(campaign_id: int, fmt: ResultFormat) -> Iterator[bytes]:
    with connect() as conn:
        for chunk in result_chunks(conn, campaign_id, fmt):
            yield chunk.encode()


async def _results_download(user: ConsoleUser, campaign_id: int, fmt: ResultFormat) -> Response:
    """The results in the one schema of every export (campaigns.results_schema), streamed."""
    await run_db(_campaign_row, user, campaign_id)
    return StreamingResponse(_result_bytes(campaign_id, fmt), media_type=MEDIA_TYPES[fmt], headers={
        "Content-Disposition":
            f'attachment; filename="campaign-{campaign_id}-results.{FILE_SUFFIXES[fmt]}"'})


@router.get("/campaigns/{campaign_id}/results.csv")
async def results_csv(user: UserDep, campaign_id: int) -> Response:
    return await _results_download(user, campaign_id, ResultFormat.CSV)


@router.get("/campaigns/{campaign_id}/results.jsonl")
async def results_jsonl(user: UserDep, campaign_id: int) -> Response:
    return await _results_download(user, campaign_id, ResultFormat.JSONL)

