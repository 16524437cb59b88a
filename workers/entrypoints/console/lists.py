"""The console's do-not-call and accounts pages: search, add, remove and import numbers for the global
list or an account's (campaigns.dnc, as `dialer dnc` and /dnc), and the accounts with their CPS, lines,
frequency caps, circuit breaker (disable and enable, as `dialer account disable|enable`) and a credentials
test (workers.entrypoints.account_check, as `dialer account test`).
Secrets are never shown: the accounts' summaries carry none, and the test hides its console setup's."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from campaigns import circuits, dnc
from campaigns.account_health import circuit_views
from campaigns.accounts import resolve_account_id
from campaigns.config import get_settings
from campaigns.csv_source import CsvLimits
from campaigns.db import connect
from campaigns.errors import BadInputFile, InvalidRequest, NotFound
from campaigns.frequency_caps import account_caps
from workers.entrypoints.account_check import check_account
from workers.entrypoints.api.deps import run_db
from workers.entrypoints.console.session import ConsoleUser, Forbidden, check_csrf, require_role
from workers.entrypoints.console.web import ConsoleRoute, UserDep, page, reached_accounts, redirect_with_flash

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
SHOWN = 100


def _list_id(user: ConsoleUser, account: str | None) -> int | None:
    """The list chosen (None: the global list, which only an admin key reaches)."""
    account_id = int(account) if account and account.isdigit() else None
    if not user.reaches(account_id):
        raise NotFound("no such do-not-call list for this key")
    return account_id


def _entries(conn: psycopg.Connection, user: ConsoleUser, account_id: int | None, q: str) -> dict[str, Any]:
    accounts = reached_accounts(conn, user)
    return {"entries": dnc.search_entries(conn, q, account_id=account_id, limit=SHOWN), "accounts": accounts}


@router.get("/dnc", response_class=HTMLResponse)
async def dnc_page(request: Request, user: UserDep, account: str | None = None, q: str = "") -> Response:
    if account is None and user.accounts is not None:
        account = str(user.accounts[0]) if user.accounts else None
    account_id = _list_id(user, account)
    data = await run_db(_entries, user, account_id, q)
    return page(request, "dnc.html", user, account_id=account_id, q=q, **data)


def _change(conn: psycopg.Connection, action: str, form: FormData, account_id: int | None) -> str:
    number = str(form.get("number") or "").strip()
    if action == "add":
        stored, added = dnc.add_number(conn, number, account_id=account_id,
                                       reason=str(form.get("reason") or "") or None, source="operator",
                                       region=str(form.get("region") or "US"))
        return f"{stored} added" if added else f"{stored} was already listed"
    removed = dnc.remove_number(conn, number, account_id=account_id)
    return f"{dnc.normalise_dnc_number(number)} removed" if removed else f"{number} was not listed"


def _import(form: FormData, account_id: int | None) -> str:
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidRequest("choose a CSV file")
    settings = get_settings()
    limits = CsvLimits(settings.max_rows, settings.max_field_bytes, settings.max_line_bytes)
    with connect() as conn:
        try:
            report = dnc.import_file(conn, upload.file, account_id=account_id,
                                     reason=str(form.get("reason") or "") or None,
                                     region=str(form.get("region") or "US"), limits=limits)
        except BadInputFile as exc:
            raise InvalidRequest(f"refused ({exc.reason}): {exc}; nothing was imported") from None
        conn.commit()
    return (f"{report.added} added, {report.already_listed} already listed, {report.rejected} rejected"
            + "".join(f"; line {line} {value!r}: {why}" for line, value, why in report.rejects[:5]))


@router.post("/dnc/{action}")
async def dnc_change(request: Request, user: UserDep, action: str) -> Response:
    if action not in ("add", "remove", "import"):
        raise NotFound(f"no action {action!r}")
    limit = get_settings().max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or int(declared) > limit:
        raise Forbidden(f"a form must declare its size and be at most {limit:,} bytes")
    form = await request.form(max_files=1, max_fields=20)
    check_csrf(user, form.get("csrf"))
    account = str(form.get("account") or "") or None
    account_id = _list_id(user, account)
    require_role(user, "operator" if account_id is not None else "admin")
    target = f"/ui/dnc?account={account_id}" if account_id is not None else "/ui/dnc"
    try:
        if action == "import":
            note = await run_in_threadpool(_import, form, account_id)
        else:
            note = await run_db(_change, action, form, account_id)
    except (InvalidRequest, ValueError) as exc:
        return redirect_with_flash(user, target, "error", str(exc))
    return redirect_with_flash(user, target, "done", note)


def _accounts(conn: psycopg.Connection, user: ConsoleUser) -> list[dict[str, Any]]:
    accounts = reached_accounts(conn, user)
    views = circuit_views(conn, [a.id for a in accounts])
    return [{"account": a, "caps": account_caps(conn, a.id), "circuit": views[a.id]} for a in accounts]


@router.get("/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request, user: UserDep) -> Response:
    return page(request, "accounts.html", user, rows=await run_db(_accounts, user), check=None)


@router.post("/accounts/{account_id}/test", response_class=HTMLResponse)
async def test_account(request: Request, user: UserDep, account_id: int) -> Response:
    form = await request.form(max_files=0, max_fields=5)
    check_csrf(user, form.get("csrf"))
    require_role(user, "operator")
    if not user.reaches(account_id):
        raise NotFound(f"no provider account {account_id}")
    check = await run_db(check_account, account_id)
    return page(request, "accounts.html", user, rows=await run_db(_accounts, user), check=check.as_dict())


def _switch(conn: psycopg.Connection, account_id: int, action: str, reason: str) -> str:
    resolve_account_id(conn, account_id)  # an admin reaches every id, even one that is not there: NotFound
    if action == "disable":
        changed = circuits.disable(conn, account_id, reason or "disabled by operator")
        return "disabled: it takes no new attempts until enabled" if changed else "already disabled"
    changed = circuits.enable(conn, account_id)
    return "enabled: it takes attempts again" if changed else "was not disabled"


@router.post("/accounts/{account_id}/{action}")
async def switch_account(request: Request, user: UserDep, account_id: int, action: str) -> Response:
    """Disable (open its circuit until enabled) or enable an account, as `dialer account disable|enable`."""
    if action not in ("disable", "enable"):
        raise NotFound(f"no action {action!r}")
    form = await request.form(max_files=0, max_fields=5)
    check_csrf(user, form.get("csrf"))
    if not user.reaches(account_id):
        raise NotFound(f"no provider account {account_id}")
    require_role(user, "operator")
    reason = str(form.get("reason") or "").strip()[:500]
    note = await run_db(_switch, account_id, action, reason)
    return redirect_with_flash(user, "/ui/accounts", "done", f"account {account_id} {note}")
