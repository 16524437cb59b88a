"""Do-not-call lists and frequency caps on the API (the same operations as `dialer dnc` and
`dialer account caps`). `account` (name or id) picks an account's list; without it, the global list.
Every route needs `Authorization: Bearer <API key>`. An account's list is read by a viewer of the account
and changed by an operator; an account outside the key's reach is answered as an unknown one. The global
list applies to every account's campaigns: any key reads it, only an admin key changes it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from itertools import islice
from typing import Annotated, Any, BinaryIO

import psycopg
from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from campaigns import dnc
from campaigns.api_keys import ApiKeyIdentity, Role
from campaigns.config import get_settings
from campaigns.csv_source import CsvLimits
from campaigns.db import connect
from campaigns.errors import NotFound
from campaigns.frequency_caps import set_account_caps
from workers.entrypoints.api.deps import DialerRoute, field_error, require_api_key, run_db
from workers.entrypoints.api.schemas import ErrorBody
from workers.entrypoints.api.scopes import ApiKeyDep, OperatedAccount, require_role, scoped_account_id

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422, 503)}
router = APIRouter(
    tags=["do-not-call"], route_class=DialerRoute, dependencies=[Depends(require_api_key)], responses=_errors
)
EXPORT_PIECE = 2000
AccountParam = Annotated[str | None, Query(description="Account name or id; omit for the global list")]
SearchParam = Annotated[str | None, Query(max_length=64, description="Digits the number contains, or "
                                         "begins with after '+' (e.g. 0143, +1646)")]


class DncAdd(BaseModel):
    number: str = Field(min_length=1, max_length=64, description="Any spelling; stored in E.164")
    account: str | None = Field(default=None, description="Account name or id; omit for the global list")
    reason: str | None = Field(default=None, max_length=500)
    region: str = "US"


class DncChange(BaseModel):
    number: str
    account_id: int | None
    changed: bool


class DncImportOut(BaseModel):
    added: int
    already_listed: int
    rejected: int
    rejects: list[dict[str, Any]]


class CapsIn(BaseModel):
    per_day: int | None = Field(default=None, ge=1)
    per_week: int | None = Field(default=None, ge=1)


class CapsOut(CapsIn):
    account_id: int


def _account(conn: psycopg.Connection, key: ApiKeyIdentity, account: str | None, need: Role,
             where: str = "query") -> int | None:
    """The list's account id (None: the global list), if the key reaches it with the role `need`.

    The global list is read by every key and changed by admins only (403); an account the key does not
    reach is the 422 of an unknown one; one it reaches with too low a role, 403."""
    if account is None:
        require_role(key, Role.VIEWER if need is Role.VIEWER else Role.ADMIN)
        return None
    try:
        account_id = scoped_account_id(conn, key, account)
    except NotFound as exc:
        raise field_error("account", str(exc), where) from None
    require_role(key, need)
    return account_id


@router.post("/dnc", status_code=201, response_model=DncChange)
async def add_dnc(body: DncAdd, key: ApiKeyDep) -> DncChange:
    """Add a number; it is never called again by the campaigns it applies to (checked before each call)."""

    def work(conn: psycopg.Connection) -> DncChange:
        account_id = _account(conn, key, body.account, Role.OPERATOR, "body")
        number, added = dnc.add_number(
            conn, body.number, account_id=account_id, reason=body.reason, source="api", region=body.region
        )
        return DncChange(number=number, account_id=account_id, changed=added)

    return await run_db(work)


@router.delete("/dnc/{number}", response_model=DncChange)
async def remove_dnc(number: str, key: ApiKeyDep, account: AccountParam = None) -> DncChange:
    def work(conn: psycopg.Connection) -> DncChange:
        account_id = _account(conn, key, account, Role.OPERATOR)
        removed = dnc.remove_number(conn, number, account_id=account_id)
        return DncChange(number=dnc.normalise_dnc_number(number), account_id=account_id, changed=removed)

    return await run_db(work)


@router.post("/dnc/import", response_model=DncImportOut)
async def import_dnc(
    key: ApiKeyDep,
    file: Annotated[UploadFile, File(description="CSV with a phone column")],
    account: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
    region: Annotated[str, Form()] = "US",
) -> DncImportOut:
    """Streamed import under the loader's limits: all of it or nothing (422 with the reason)."""
    return await run_in_threadpool(_import, file.file, key, account or None, reason, region)


def _import(source: BinaryIO, key: ApiKeyIdentity, account: str | None, reason: str | None,
            region: str) -> DncImportOut:
    settings = get_settings()
    limits = CsvLimits(settings.max_rows, settings.max_field_bytes, settings.max_line_bytes)
    with connect() as conn:
        account_id = _account(conn, key, account, Role.OPERATOR, "form")
        source.seek(0)
        report = dnc.import_file(
            conn, source, account_id=account_id, reason=reason, region=region, limits=limits
        )
        conn.commit()
    rejects = [{"line": line, "value": value, "reason": why} for line, value, why in report.rejects]
    return DncImportOut(
        added=report.added, already_listed=report.already_listed, rejected=report.rejected, rejects=rejects
    )


@router.get(
    "/dnc",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "number,reason,source,added_at"}},
)
async def export_dnc(key: ApiKeyDep, account: AccountParam = None, search: SearchParam = None,
                     limit: Annotated[int, Query(ge=1, le=1000, description="With search: at most this "
                                                 "many entries")] = 100) -> StreamingResponse:
    """A whole list as CSV, streamed; with `search`, only the entries it finds (at most `limit`)."""
    account_id = await run_db(_account, key, account, Role.VIEWER)
    if search is not None:
        found = await run_db(partial(dnc.search_entries, account_id=account_id, limit=limit), search)
        buffer = io.StringIO()
        dnc.write_csv(iter(found), buffer)
        return StreamingResponse(iter([buffer.getvalue()]), media_type="text/csv; charset=utf-8")
    return StreamingResponse(_export(account_id), media_type="text/csv; charset=utf-8")


def _export(account_id: int | None) -> Iterator[str]:
    """The CSV in pieces of EXPORT_PIECE entries, read through a server-side cursor."""
    with connect() as conn:
        entries = dnc.iter_entries(conn, account_id=account_id)
        buffer = io.StringIO()
        dnc.write_csv(iter(()), buffer)  # the header
        while True:
            piece = list(islice(entries, EXPORT_PIECE))
            dnc.write_csv(iter(piece), buffer, header=False)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(piece) < EXPORT_PIECE:
                return


@router.put("/accounts/{account}/frequency-caps", response_model=CapsOut)
async def put_caps(account_id: OperatedAccount, caps: CapsIn) -> CapsOut:
    """Attempts per number per rolling day and week across the account's campaigns (null: no cap)."""

    def work(conn: psycopg.Connection) -> CapsOut:
        set_account_caps(conn, account_id, per_day=caps.per_day, per_week=caps.per_week)
        return CapsOut(account_id=account_id, per_day=caps.per_day, per_week=caps.per_week)

    return await run_db(work)
