"""What the operators' API routes share: API-key auth, the database helper, and the error boundary.

Errors -> responses (body: ErrorBody, {"error": code, "message": one line, "fields": [...]}):

    missing / unknown / revoked API key   401 unauthorized (+ WWW-Authenticate: Bearer)
    a key whose role is too low           403 forbidden         (scopes.require_role; outside its
                                                                 accounts it is a 404, as if missing)
    NotFound                              404 not_found
    InvalidRequest from a state change    409 conflict          (run_db(..., invalid_status=409))
    InvalidRequest otherwise              422 invalid_request   (a bad argument)
    request validation (pydantic)         422 invalid_field, with every field at fault
    BadInputFile                          422 its reason code (empty_file, no_phone_column, …)
    ServiceUnavailable, Postgres down     503 service_unavailable

FastAPI routers cannot hold exception handlers, so the boundary is a route class (DialerRoute):
a router built with `APIRouter(route_class=DialerRoute)` answers these errors itself, whatever app
includes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import psycopg
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.api_keys import ApiKeyIdentity, verify_api_key_async
from campaigns.db import connect
from campaigns.errors import BadInputFile, InvalidRequest, NotFound, ServiceUnavailable
from campaigns.settings_rules import InvalidSetting
from workers.entrypoints.api.schemas import ErrorBody, FieldError

log = logging.getLogger(__name__)
T = TypeVar("T")


class ApiError(Exception):
    """An error answered as-is: status, code, message, and the fields at fault if any."""

    def __init__(self, status_code: int, error: str, message: str, fields: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message = message
        self.fields = fields
        self.headers = headers


def field_error(field: str, message: str, location: str = "body") -> ApiError:
    """422 naming one field."""
    return ApiError(422, "invalid_field", f"{field}: {message}",
                    [FieldError(field=field, location=location, message=message)])


def _validation_error(exc: RequestValidationError) -> ApiError:
    fields = []
    for item in exc.errors():
        location, *path = [str(part) for part in item.get("loc", ())] or ["body"]
        # A model-level check (end_at after start_at) has no path of its own; its message names the fields.
        fields.append(FieldError(field=".".join(path) or location, location=location,
                                 message=str(item.get("msg", "invalid")).removeprefix("Value error, ")))
    message = "; ".join(f"{f.field}: {f.message}" for f in fields) or "invalid request"
    return ApiError(422, "invalid_field", message, fields)


HTTP_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


def as_api_error(exc: Exception) -> ApiError | None:
    """The API's answer to a domain or driver error; None for anything unexpected (a 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StarletteHTTPException):  # FastAPI's own: a body it cannot parse, no such route
        code = HTTP_ERROR_CODES.get(exc.status_code, "client_error" if exc.status_code < 500 else "error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}) or None)
    if isinstance(exc, InvalidSetting):
        return field_error(exc.field, exc.message)
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, BadInputFile):
        return ApiError(422, exc.reason, f"{exc}; nothing was stored")
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, InvalidRequest):
        return ApiError(422, "invalid_request", str(exc))
    if isinstance(exc, ServiceUnavailable):
        return ApiError(503, "service_unavailable", str(exc))
    if isinstance(exc, psycopg.DataError):  # a value Postgres cannot take (a NUL, a number out of range)
        return ApiError(422, "invalid_value", "a value in the request cannot be stored: "
                        + (str(exc).strip().splitlines() or ["invalid value"])[0])
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        log.warning("database unavailable: %s", exc)
        return ApiError(503, "service_unavailable", "Postgres is not reachable; try again shortly")
    return None


async def answer_http_exception(request: Request, exc: Exception) -> Response:
    """App-wide handler: a route that does not exist or a method it does not take, in the error shape."""
    error = as_api_error(exc)
    assert error is not None
    return error_response(error)


def error_response(error: ApiError) -> JSONResponse:
    body = ErrorBody(error=error.error, message=error.message, fields=error.fields)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=error.status_code,
                        headers=error.headers)


class DialerRoute(APIRoute):
    """A route that answers the dialer's errors (and request validation) as ErrorBody responses."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                error = as_api_error(exc)
                if error is None:
                    raise
                return error_response(error)

        return handle


async def run_db(fn: Callable[..., T], *args: Any, invalid_status: int = 422) -> T:
    """`fn(conn, *args)` on its own psycopg connection in the threadpool, committed if it returns.

    invalid_status: what an InvalidRequest from `fn` means here, 409 for a state change refused.
    """
    def call() -> T:
        with connect() as conn:
            result = fn(conn, *args)
            conn.commit()
            return result

    try:
        return await run_in_threadpool(call)
    except InvalidRequest as exc:
        if invalid_status == 409:
            raise ApiError(409, "conflict", str(exc)) from exc
        raise


_bearer = HTTPBearer(auto_error=False,
                     description="An API key from `dialer apikey create NAME --role ROLE [--account A]`")


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKeyIdentity:
    """The holder of the request's `Authorization: Bearer KEY`, with its scope (role and accounts); 401 if it
    is missing, unknown or revoked. A key the request guard verified before the body was read is not
    looked up again."""
    verified = getattr(request.state, "api_key", None)
    if isinstance(verified, ApiKeyIdentity):
        return verified
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>",
                       headers=challenge)
    async with request.app.state.pool.connection(timeout=5) as conn:
        holder = await verify_api_key_async(conn, credentials.credentials)
    if holder is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", headers=challenge)
    request.state.api_key = holder
    return holder


ApiKeyDep = Annotated[ApiKeyIdentity, Depends(require_api_key)]
