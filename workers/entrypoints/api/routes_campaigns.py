"""The operators' campaign API: upload a CSV, list, inspect, configure, run, and download results.

Every route needs `Authorization: Bearer <API key>`, and states what it needs of the key's scope
(workers/entrypoints/api/scopes.py): a campaign of an account the key reaches, for a viewer to read or an
operator to change; another account's campaign is a 404. Routes are thin: they validate input (pydantic),
call campaigns.loader / campaigns.control on a sync psycopg connection in the threadpool (run_db), and
shape the answer. Errors are answered by deps.DialerRoute; InvalidRequest is 409 from the state-change
routes (start, pause, resume, cancel: the campaign's state or setup forbids it now) and 422 elsewhere
(a bad argument).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated, Any, BinaryIO, Literal

import psycopg
from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from psycopg.rows import dict_row
from starlette.concurrency import run_in_threadpool

from campaigns import control, listing
from campaigns.account_list_rules import AccountsChange, CallerIdChoice, NamedAccount
from campaigns.account_listing import listed_accounts
from campaigns.api_keys import ApiKeyIdentity, Role
from campaigns.attempt_history import destination_attempts
from campaigns.db import connect
from campaigns.errors import NotFound
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.numbers import RejectReason, check_region, normalise_caller_id, valid_timezone
from campaigns.rejects import reject_page
from campaigns.reports import LoadReport
from campaigns.states import CampaignState
from workers.entrypoints.api.deps import DialerRoute, field_error, require_api_key, run_db
from workers.entrypoints.api.results_download import (
    RESULTS_CONTENT,
    FormatQuery,
    chosen_format,
    results_response,
)
from workers.entrypoints.api.routes_webhooks import store_notify_url
from workers.entrypoints.api.schemas import (
    AccountEntry,
    AttemptOut,
    CampaignAccountOut,
    CampaignPage,
    CampaignSettingsOut,
    CampaignStatusOut,
    CampaignSummary,
    CampaignUpdate,
    CancelOut,
    ErrorBody,
    LoadReportOut,
    RejectedRowOut,
    RejectsPage,
    StateChange,
    format_window,
)
from workers.entrypoints.api.scopes import (
    ApiKeyDep,
    OperatedCampaign,
    ViewedCampaign,
    reachable_accounts,
    require_role,
    scoped_account_id,
)
from workers.housekeeping.hangup import hang_up_live_calls
from workers.providers.http import make_client

C = CampaignState
# The states a campaign list may be filtered by: a campaign still loading is never listed.
ListedState = Literal[C.DRAFT, C.RUNNING, C.PAUSED, C.COMPLETED, C.CANCELLED]
BIGINT_MAX = 2**63 - 1  # ids and offsets beyond Postgres' bigint are a 422, not a driver error
HangupFlag = Annotated[bool, Query(description="Also end live calls through each provider's hang-up API")]
MessageForm = Annotated[str | None, Form(description="What answered calls hear: {column} from each row")]

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503)}
router = APIRouter(prefix="/campaigns", tags=["campaigns"], route_class=DialerRoute,
                   dependencies=[Depends(require_api_key)], responses=_errors)
_conflict: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": "state forbids it"}}


@router.post("", status_code=201, response_model=LoadReportOut)
async def create_campaign(
    response: Response,
    key: ApiKeyDep,
    file: Annotated[UploadFile, File(description="CSV: a header row and a phone column")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    phone_column: Annotated[str | None, Form(description="Default: found by name")] = None,
    default_region: Annotated[str, Form(description="For numbers without +country code")] = "US",
    account: Annotated[str | None, Form(description="Provider account, by name or id")] = None,
    caller_id: Annotated[str | None, Form(description="E.164, or national in the region")] = None,
    timezone: Annotated[str, Form(description="Zone of sip: URIs and numbers of unknown zone")] = "UTC",
    message: MessageForm = None,
) -> LoadReportOut:
    """Create a draft campaign from an uploaded CSV: every row loaded or rejected with a reason, or
    nothing stored at all when the file cannot be read (422 with the reason and where). An operator key
    names one of its accounts."""
    require_role(key, Role.OPERATOR)
    options = replace(_load_options(phone_column=phone_column or None, default_region=default_region,
                                    caller_id=caller_id or None, timezone=timezone), message=message or None)
    report = await run_in_threadpool(_load_upload, file.file, name=name, account=account or None,
                                     options=options, key=key)
    response.headers["Location"] = f"/campaigns/{report.campaign_id}"
    return LoadReportOut.model_validate({**report.model_dump(), "seconds": round(report.seconds, 3)})


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    key: ApiKeyDep,
    state: Annotated[ListedState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    archived: Annotated[bool, Query(description="Archived campaigns too")] = False,
) -> CampaignPage:
    """Campaigns of the key's accounts, newest first, with their state and row counts."""
    rows = await run_db(_campaign_page, state, limit, offset, reachable_accounts(key), archived)
    return CampaignPage(items=[CampaignSummary(**row) for row in rows], limit=limit, offset=offset)


@router.get("/{campaign_id}", response_model=CampaignStatusOut)
async def get_campaign(campaign_id: ViewedCampaign, key: ApiKeyDep) -> CampaignStatusOut:
    """Where a campaign stands: destinations per status, attempts per outcome, 429s met, its accounts'
    circuit breakers, settings."""
    return _within_reach(await run_db(_status_out, campaign_id, key), key)


def _within_reach(out: CampaignStatusOut, key: ApiKeyIdentity) -> CampaignStatusOut:
    """The status without the accounts the key does not reach (a fallback an admin set): to this key they
    do not exist, their names and circuits included."""
    shown = [a for a in out.accounts if key.reaches(a.account_id)]
    return out if len(shown) == len(out.accounts) else out.model_copy(update={"accounts": shown})


@router.patch("/{campaign_id}", response_model=CampaignStatusOut)
async def update_campaign(campaign_id: OperatedCampaign, update: CampaignUpdate,
                          key: ApiKeyDep) -> CampaignStatusOut:
    """Change settings; fields absent or null stay as they are. 422 names the field at fault."""
    return _within_reach(await run_db(_configure, campaign_id, update, key), key)


@router.get("/{campaign_id}/rejects", response_model=RejectsPage)
async def list_rejects(
    campaign_id: ViewedCampaign,
    reason: Annotated[RejectReason | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> RejectsPage:
    """Rows of the CSV that were not loaded, by line: the raw value and the reason."""
    total, rows = await run_db(_reject_rows, campaign_id, reason, limit, offset)
    return RejectsPage(campaign_id=campaign_id, total=total, limit=limit, offset=offset,
                       items=[RejectedRowOut(**row) for row in rows])


@router.get("/{campaign_id}/attempts", response_model=list[AttemptOut])
async def list_attempts(
    campaign_id: ViewedCampaign,
    number: Annotated[str, Query(min_length=1, max_length=300,
                                 description="The number as dialed (E.164 or sip:), or its line")],
) -> list[AttemptOut]:
    """One destination's attempts over every run, each with the account that placed it."""
    found = await run_db(destination_attempts, campaign_id, number)
    return [AttemptOut(**a.as_dict()) for a in found]


@router.get("/{campaign_id}/results", response_class=StreamingResponse, responses=RESULTS_CONTENT)
async def download_results(campaign_id: ViewedCampaign, request: Request,
                           fmt: FormatQuery = None) -> StreamingResponse:
    """A row per destination: its row of the uploaded file, then its outcome and last call; CSV or JSON
    Lines, streamed from a server-side cursor."""
    return await results_response(campaign_id, chosen_format(fmt, request.headers.get("accept")))


@router.post("/{campaign_id}/start", response_model=StateChange, responses=_conflict)
async def start_campaign(campaign_id: OperatedCampaign) -> StateChange:
    """Draft or paused -> running. 409 with the reason if it has no account or caller ID, or is done."""
    return await run_db(_change_state, campaign_id, control.start, invalid_status=409)


@router.post("/{campaign_id}/pause", response_model=StateChange, responses=_conflict)
async def pause_campaign(campaign_id: OperatedCampaign) -> StateChange:
    """Running -> paused: no new call is placed; calls in progress finish and are recorded."""
    return await run_db(_change_state, campaign_id, control.pause, invalid_status=409)


@router.post("/{campaign_id}/resume", response_model=StateChange, responses=_conflict)
async def resume_campaign(campaign_id: OperatedCampaign) -> StateChange:
    """Paused -> running (a draft is started with /start)."""
    return await run_db(_change_state, campaign_id, control.resume, invalid_status=409)


@router.post("/{campaign_id}/cancel", response_model=CancelOut, responses=_conflict)
async def cancel_campaign(campaign_id: OperatedCampaign, hangup: HangupFlag = False) -> CancelOut:
    """Stop for good: every destination not yet dialed becomes cancelled; with hangup, live calls end too."""
    change = await run_db(_change_state, campaign_id, control.cancel, invalid_status=409)
    report = await run_db(_hang_up, campaign_id) if hangup else None
    return CancelOut(**change.model_dump(), hangup=report)


def _hang_up(conn: psycopg.Connection, campaign_id: int) -> dict[str, Any]:
    with make_client() as client:
        report = hang_up_live_calls(conn, client, campaign_id)
    return {"requested": report.requested, "already_ended": report.already_ended,
            "without_id": report.without_id, "unsupported": dict(report.unsupported), "errors": report.errors}


# --- the work behind the routes: sync, on the connection run_db gives -----------------------------


def _load_options(*, phone_column: str | None, default_region: str, caller_id: str | None,
                  timezone: str) -> LoadOptions:
    """The loader's options from the form, or 422 naming the form field at fault."""
    try:
        region = check_region(default_region)
    except ValueError as exc:
        raise field_error("default_region", str(exc), "form") from None
    if caller_id is not None:
        try:
            normalise_caller_id(caller_id, region)
        except ValueError as exc:
            raise field_error("caller_id", str(exc), "form") from None
    if valid_timezone(timezone) is None:
        raise field_error("timezone", f"unknown time zone {timezone!r}", "form")
    return LoadOptions(default_region=region, phone_column=phone_column, caller_id=caller_id,
                       default_timezone=timezone)


def _load_upload(source: BinaryIO, *, name: str, account: str | None, options: LoadOptions,
                 key: ApiKeyIdentity) -> LoadReport:
    if account is None and not key.reaches(None):
        # A campaign of no account is seen by admins only: this key would lose sight of it.
        raise field_error("account", "required: name one of this API key's accounts", "form")
    if account is not None:
        with connect() as conn:
            try:
                account_id = scoped_account_id(conn, key, account)
            except NotFound as exc:
                raise field_error("account", str(exc), "form") from None
        options = LoadOptions(**{**options.__dict__, "account_id": account_id})
    source.seek(0)
    return load_campaign_csv(name=name, source=source, options=options)


def _campaign_page(conn: psycopg.Connection, state: str | None, limit: int, offset: int,
                   accounts: list[int] | None, archived: bool) -> list[dict[str, Any]]:
    """A page of campaigns; `accounts`: only theirs (None: every campaign, for an admin key)."""
    return listing.list_campaigns(conn, state=state, within_accounts=accounts, limit=limit, offset=offset,
                                  archived=archived)


def _status_out(conn: psycopg.Connection, campaign_id: int,
                key: ApiKeyIdentity | None = None) -> CampaignStatusOut:
    """The campaign's status and settings; its accounts only those `key` reaches (a fallback an admin set
    outside the key's accounts does not exist for it)."""
    st = control.status(conn, campaign_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row is not None
    accounts = [CampaignAccountOut(account=a.account, caller_id=a.caller_id, role=a.role)
                for a in listed_accounts(conn, campaign_id) if key is None or key.reaches(a.account_id)]
    settings = CampaignSettingsOut.model_validate(row, update={
        "window": format_window(row["window_start"], row["window_end"]), "days": sorted(row["window_days"]),
        "timezone": row["timezone_override"], "accounts": accounts})
    return CampaignStatusOut.model_validate(st, update={"settings": settings})


def _configure(conn: psycopg.Connection, campaign_id: int, update: CampaignUpdate,
               key: ApiKeyIdentity) -> CampaignStatusOut:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT default_region FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    account_id = caller_id = None
    if update.account is not None:
        try:
            account_id = scoped_account_id(conn, key, update.account)
        except NotFound as exc:
            raise field_error("account", str(exc)) from None
    accounts = _accounts_change(conn, key, update.accounts) if update.accounts is not None else None
    if update.caller_id is not None:
        try:
            caller_id = normalise_caller_id(update.caller_id, row["default_region"])
        except ValueError as exc:
            raise field_error("caller_id", str(exc)) from None
    control.configure(conn, campaign_id, update.to_settings(account_id=account_id, caller_id=caller_id),
                      accounts)
    if update.notify_url is None:
        return _status_out(conn, campaign_id, key)
    secret = store_notify_url(conn, update.notify_url, campaign_id=campaign_id)
    return _status_out(conn, campaign_id, key).model_copy(update={"notify_secret": secret})


def _accounts_change(conn: psycopg.Connection, key: ApiKeyIdentity,
                     entries: list[str | int | AccountEntry]) -> AccountsChange:
    """`accounts` as the change of the campaign's list: the first its primary, the others its fallbacks.
    The key must reach each of them; one it does not reach is answered as an unknown one, the same 422."""
    named: list[NamedAccount] = []
    caller_ids: list[CallerIdChoice] = []
    for i, entry in enumerate(entries):
        given = entry.account if isinstance(entry, AccountEntry) else entry
        try:
            account_id = scoped_account_id(conn, key, given)
        except NotFound as exc:
            raise field_error(f"accounts.{i}", str(exc)) from None
        named.append(NamedAccount(account_id, str(given), f"accounts.{i}"))
        if isinstance(entry, AccountEntry) and entry.caller_id is not None:
            caller_ids.append(CallerIdChoice(account_id, str(given), entry.caller_id,
                                             f"accounts.{i}.caller_id"))
    return AccountsChange(primary=named[0], fallbacks=named[1:], caller_ids=caller_ids)


def _reject_rows(conn: psycopg.Connection, campaign_id: int, reason: str | None, limit: int,
                 offset: int) -> tuple[int, list[dict[str, Any]]]:
    found = reject_page(conn, campaign_id, reason=reason, limit=limit, offset=offset)
    return found.total, [asdict(row) for row in found.rows]


def _change_state(conn: psycopg.Connection, campaign_id: int,
                  action: Callable[[psycopg.Connection, int], int | None]) -> StateChange:
    cancelled = action(conn, campaign_id)
    row = conn.execute("SELECT state, state_reason FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert row is not None
    return StateChange(id=campaign_id, state=row[0], state_reason=row[1],
                       destinations_cancelled=cancelled if action is control.cancel else None)
