"""Health and metrics of the API process: /health/live, /health/ready (Postgres and Redis answer),
/metrics (Prometheus text: this process's counters plus the dialer's state, workers.metrics.state_snapshot).
The probes need no API key: they carry no campaign data. /metrics does (metrics_auth): the metrics token or
any API key (an operator or viewer key reads only its accounts' series)."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool

from workers.entrypoints.api.metrics_auth import EVERY_ACCOUNT, scrape_scope
from workers.metrics.counters import registry
from workers.metrics.scoped_exposition import exposition_for_accounts
from workers.metrics.state_snapshot import StateSnapshot

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "Postgres or Redis does not answer"}})
async def ready(request: Request) -> JSONResponse:
    """Ready to take callbacks and requests: Postgres and Redis both answer within a short timeout."""
    checks: dict[str, str] = {}

    async def postgres() -> None:
        async with request.app.state.pool.connection(timeout=READY_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")

    async def redis_ping() -> None:
        await request.app.state.redis.ping()

    for name, check in (("postgres", postgres), ("redis", redis_ping)):
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_S)
            checks[name] = "ok"
        except Exception:  # any failure means not ready
            # The anonymous answer names only the store: exception text can carry hosts, ports, user
            # names and driver versions. The operator reads why in the log.
            log.warning("readiness: %s unavailable", name, exc_info=True)
            checks[name] = "unavailable"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


UNAUTHORIZED = {"error": "unauthorized",
                "message": "send Authorization: Bearer <DIALER_METRICS_TOKEN or an API key>", "fields": None}


@router.get("/metrics", response_class=Response, responses={
    401: {"description": "no metrics token or valid API key"},
    503: {"description": "an API key could not be checked (Postgres down)"}})
async def metrics(request: Request) -> Response:
    """Prometheus exposition: this process's metrics and the dialer's state (read at most once per
    DIALER_METRICS_REFRESH_S). Needs `Authorization: Bearer` with the metrics token or an API key."""
    try:
        scope = await scrape_scope(request)
    except (psycopg.OperationalError, PoolTimeout):
        return JSONResponse({"error": "service_unavailable", "message": "cannot check the API key now",
                             "fields": None}, status_code=503)
    if scope is None:
        return JSONResponse(UNAUTHORIZED, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    snapshot: StateSnapshot | None = getattr(request.app.state, "metrics_state", None)
    state = await snapshot.latest() if snapshot is not None else b""
    own = await run_in_threadpool(generate_latest, registry())
    exposition = own + state
    if scope != EVERY_ACCOUNT:
        assert isinstance(scope, frozenset)
        exposition = await run_in_threadpool(exposition_for_accounts, exposition, scope)
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)
