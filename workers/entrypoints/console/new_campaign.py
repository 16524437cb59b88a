"""The console's new-campaign page: upload a CSV, see what the loader detects and the first rows as they
will be dialed (with the message as each will hear it), pick the settings, create. Every check is the
domain's, so each error shown beside its field is in the words the CLI prints (campaigns.numbers,
campaigns.settings_rules, campaigns.schedules and campaigns.schedule_store as `dialer campaign schedule`
reads its options, the loader's BadInputFile)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

import psycopg
import typer
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from campaigns import control, settings_rules
from campaigns.accounts import resolve_account_id
from campaigns.config import get_settings
from campaigns.csv_source import CsvLimits, CsvStream
from campaigns.db import connect
from campaigns.errors import BadInputFile, InvalidRequest, NotFound
from campaigns.loader import LoadOptions, load_campaign_csv
from campaigns.numbers import NumberPolicy, RowLayout, check_region, normalise_caller_id, normalise_row
from campaigns.schedule_store import parse_until, set_schedule
from campaigns.schedules import CronSpec, next_firing, parse_cron_spec, parse_duration, parse_outcomes
from campaigns.settings_rules import CampaignSettings, InvalidSetting
from campaigns.templates import render, template_variables
from workers.entrypoints.api.deps import run_db
from workers.entrypoints.api.schemas import parse_window
from workers.entrypoints.cli_campaign_control import _retry as parse_retry_options  # the CLI's own parser
from workers.entrypoints.console.session import ConsoleUser, check_csrf, require_role
from workers.entrypoints.console.web import ConsoleRoute, UserDep, page, reached_accounts, redirect_with_flash

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
PREVIEW_ROWS = 8
T = TypeVar("T")
# The form's field for each setting a domain check names (settings_rules' field names).
FIELD_OF = {"retry_policy": "retries", "timezone": "timezone", "window_days": "days", "days": "days"}
SCHEDULE_OPTIONS = ("cron_timezone", "until", "only", "run_for")  # `campaign schedule`'s, beside --cron


class FormErrors(Exception):
    """Errors beside their fields: {field: message}."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Schedule:
    """The form's schedule, as set_schedule takes it."""

    spec: CronSpec
    only: list[str] | None
    until_at: datetime | None
    run_for: timedelta | None


@dataclass
class NewCampaign:
    """The form, checked: what the loader takes, and what is set on the draft after it."""

    name: str
    options: LoadOptions
    settings: CampaignSettings
    schedule: Schedule | None
    errors: dict[str, str] = field(default_factory=dict)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _upload(form: FormData) -> UploadFile | None:
    upload = form.get("file")
    return upload if isinstance(upload, UploadFile) and upload.filename else None


async def _form(request: Request) -> FormData:
    """The multipart body, read only after the session (the route's dependency) and the size cap passed."""
    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > limit:
        raise FormErrors({"file": f"the upload must declare its size and be at most {limit:,} bytes "
                                  "(DIALER_MAX_UPLOAD_BYTES)"})
    return await request.form(max_files=1, max_fields=50)


def _attempt(errors: dict[str, str], name: str, check: Callable[..., T], *args: Any) -> T | None:
    """check(*args), or None with its refusal recorded beside field `name` in the domain's words."""
    try:
        return check(*args)
    except InvalidSetting as exc:
        errors.setdefault(FIELD_OF.get(exc.field, name), exc.message)
    except (ValueError, InvalidRequest, NotFound, typer.BadParameter) as exc:
        errors.setdefault(name, str(exc))
    return None


def _account_in_scope(conn: psycopg.Connection, user: ConsoleUser, account: str) -> int:
    account_id = resolve_account_id(conn, account)
    if not user.reaches(account_id):
        raise NotFound(f"no provider account {account!r}")
    return account_id


def _check(conn: psycopg.Connection, user: ConsoleUser, form: FormData) -> NewCampaign:
    """Every field checked by the domain's rules; all the errors at once."""
    errors: dict[str, str] = {}
    name = _text(form, "name")
    if not name:
        errors["name"] = "a campaign needs a name"
    region = _attempt(errors, "default_region", check_region, _text(form, "default_region") or "US") or "US"
    account = _text(form, "account")
    account_id = _attempt(errors, "account", _account_in_scope, conn, user, account) if account else None
    caller_id = _text(form, "caller_id") or None
    if caller_id:
        _attempt(errors, "caller_id", normalise_caller_id, caller_id, region)
    timezone = _text(form, "timezone") or "UTC"
    _attempt(errors, "timezone", settings_rules.check_timezone, timezone)
    message = _text(form, "message") or None
    if message:
        _attempt(errors, "message", template_variables, message)
    window_text, days_text = _text(form, "window"), _text(form, "days")
    window = _attempt(errors, "window", parse_window, window_text) if window_text else None
    days = _attempt(errors, "days", settings_rules.parse_days, days_text) if days_text else None
    retry_policy = _attempt(errors, "retries", parse_retry_options,
                            _text(form, "retries").replace(",", " ").split() or None)
    settings = CampaignSettings(window_start=window[0] if window else None,
                                window_end=window[1] if window else None, window_days=days,
                                retry_policy=retry_policy)
    _attempt(errors, "retries", lambda: settings_rules.checked(
        settings, region=region, provider=None, plain_http_urls=get_settings().development))
    schedule = _schedule(errors, form, datetime.now(UTC))
    if _upload(form) is None:
        errors["file"] = "choose a CSV file"
    if errors:
        raise FormErrors(errors)
    options = LoadOptions(default_region=region, phone_column=_text(form, "phone_column") or None,
                          account_id=account_id, caller_id=caller_id, default_timezone=timezone,
                          message=message)
    return NewCampaign(name, options, settings, schedule)


def _schedule(errors: dict[str, str], form: FormData, now: datetime) -> Schedule | None:
    """The form's schedule, read by `dialer campaign schedule`'s parsers (--cron with --timezone, --until,
    --only, --run-for), each refusal beside its field; None without a cron."""
    cron = _text(form, "cron")
    if not cron:
        for name in SCHEDULE_OPTIONS:
            if _text(form, name):
                errors.setdefault("cron", "a schedule needs a cron; the other schedule fields go with one")
        return None
    spec = _attempt(errors, "cron", parse_cron_spec, cron, _text(form, "cron_timezone") or None)
    until_at = _attempt(errors, "until", parse_until, _text(form, "until") or None)
    only = _attempt(errors, "only", parse_outcomes, _text(form, "only") or None)
    run_for = _attempt(errors, "run_for", parse_duration, _text(form, "run_for") or None)
    if spec is None or "until" in errors or "only" in errors or "run_for" in errors:
        return None
    first = next_firing(spec, now)
    if until_at is not None and first > until_at:  # set_schedule's refusal, before anything is loaded
        errors["until"] = f"the schedule's first firing ({first:%Y-%m-%d %H:%M} UTC) is after --until"
        return None
    return Schedule(spec, only, until_at, run_for)


def preview(source: BinaryIO, options: LoadOptions, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """What the loader will see: the layout, and the first rows as they will be dialed or rejected."""
    settings = get_settings()
    stream = CsvStream(source, phone_column=options.phone_column,
                       limits=CsvLimits(settings.max_rows, settings.max_field_bytes, settings.max_line_bytes))
    layout = stream.layout
    row_layout = RowLayout.build(layout.header, layout.phone_index, layout.timezone_index, layout.delimiter)
    policy = NumberPolicy(default_region=options.default_region, default_timezone=options.default_timezone)
    shown = []
    for line_no, fields in itertools.islice(stream, rows):
        row = normalise_row(line_no, fields, row_layout, policy)
        spoken = render(options.message, row.variables).text if options.message and row.number else None
        shown.append({"row": row, "spoken": spoken})
    return {"layout": layout, "rows": shown,
            "timezone_column": layout.header[layout.timezone_index] if layout.timezone_index is not None
            else None}


def _create(user: ConsoleUser, form: FormData) -> int:
    upload = _upload(form)
    assert upload is not None
    with connect() as conn:
        new = _check(conn, user, form)
    upload.file.seek(0)
    try:
        report = load_campaign_csv(name=new.name, source=upload.file, options=new.options)
    except BadInputFile as exc:
        raise FormErrors({"file": f"refused ({exc.reason}): {exc}; nothing was loaded"}) from None
    except InvalidRequest as exc:
        raise FormErrors({"file": str(exc)}) from None
    with connect() as conn:
        control.configure(conn, report.campaign_id, new.settings)
        if new.schedule:
            set_schedule(conn, report.campaign_id, new.schedule.spec, only=new.schedule.only,
                         until_at=new.schedule.until_at, run_for=new.schedule.run_for, now=datetime.now(UTC))
        conn.commit()
    return report.campaign_id


def _accounts(conn: psycopg.Connection, user: ConsoleUser) -> list[Any]:
    return reached_accounts(conn, user)


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_form(request: Request, user: UserDep) -> Response:
    require_role(user, "operator")
    return page(request, "new.html", user, accounts=await run_db(_accounts, user), errors={}, values={})


@router.post("/campaigns/new")
async def create(request: Request, user: UserDep) -> Response:
    require_role(user, "operator")
    try:
        form = await _form(request)
        check_csrf(user, form.get("csrf"))
        campaign_id = await run_in_threadpool(_create, user, form)
    except FormErrors as exc:
        values = {k: v for k, v in (form.items() if "form" in locals() else []) if isinstance(v, str)}
        return page(request, "new.html", user, 422, accounts=await run_db(_accounts, user), errors=exc.errors,
                    values=values)
    return redirect_with_flash(user, f"/ui/campaigns/{campaign_id}", "done", "created")


@router.post("/campaigns/preview", response_class=HTMLResponse)
async def preview_fragment(request: Request, user: UserDep) -> Response:
    """The detected layout and the first rows, for the file chosen (nothing is stored)."""
    try:
        form = await _form(request)
        check_csrf(user, form.get("csrf"))
        upload = _upload(form)
        if upload is None:
            raise FormErrors({"file": "choose a CSV file"})
        region = _text(form, "default_region") or "US"
        options = LoadOptions(default_region=check_region(region),
                              phone_column=_text(form, "phone_column") or None,
                              default_timezone=settings_rules.check_timezone(
                                  _text(form, "timezone") or "UTC"),
                              message=_text(form, "message") or None)
        found = await run_in_threadpool(preview, upload.file, options)
    except FormErrors as exc:
        return page(request, "_preview.html", user, errors=exc.errors)
    except (BadInputFile, InvalidRequest, ValueError) as exc:
        return page(request, "_preview.html", user, errors={"file": str(exc)})
    return page(request, "_preview.html", user, errors={}, **found)
