"""Health and metrics of the API process: /health/live, /health/ready (Postgres and Redis answer),
/metrics (Prometheus text: this process's counters plus the dialer's state, workers.metrics.state_collector).
None needs an API key: they carry no campaign data, and probes and scrapers hold no keys."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from workers.metrics.counters import registry

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


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition: this process's metrics and the dialer's state."""
    state: CollectorRegistry | None = getattr(request.app.state, "metrics_state", None)

    def render() -> bytes:
        body = generate_latest(registry())
        return body + generate_latest(state) if state is not None else body

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)
