"""The HTTP API process (`dialer api`): carrier callbacks and the operators' campaign API."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.config import get_settings
from campaigns.db import SESSION_OPTIONS
from campaigns.store.event_store import EventWriter
from workers.callbacks.applier_thread import EventApplier
from workers.callbacks.apply_on_store import apply_on_store
from workers.callbacks.call_scripts import CallScripts
from workers.callbacks.nonces import NonceClaims
from workers.callbacks.receiver import AccountCache
from workers.callbacks.receiver import router as callbacks_router
from workers.entrypoints.api.deps import answer_http_exception
from workers.entrypoints.api.request_guard import RequestGuard
from workers.entrypoints.api.routes_accounts import router as accounts_router
from workers.entrypoints.api.routes_api_keys import router as api_keys_router
from workers.entrypoints.api.routes_campaigns import router as campaigns_router
from workers.entrypoints.api.routes_dnc import router as dnc_router
from workers.entrypoints.api.routes_health import router as health_router
from workers.entrypoints.api.routes_retirement import router as retirement_router
from workers.entrypoints.api.routes_runs import router as runs_router
from workers.entrypoints.api.routes_webhooks import router as webhooks_router
from workers.entrypoints.console import router as console_router
from workers.metrics.state_collector import state_collector
from workers.metrics.state_snapshot import StateSnapshot


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    # A callback allocates a few hundred objects: at the default gen-0 threshold (700) a collection ran every
    # few callbacks, and the older generations' scans of everything the process holds were the 99th
    # percentile of the acknowledgement (bench.callbacks_bench: 87-93 ms -> 41-43 ms, and a tenth of the
    # API's CPU). What start-up made (modules, the app) is frozen out of the scans.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # No minimum open connections: the API starts (and answers 503) even while Postgres is down.
    connect = {"autocommit": True, "connect_timeout": 3, "options": SESSION_OPTIONS}
    pool = AsyncConnectionPool(settings.psycopg_url, min_size=0, max_size=8, open=False, timeout=5,
                               kwargs=connect)
    await pool.open(wait=False)
    stored = threading.Event()
    app.state.pool = pool
    app.state.redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5)
    app.state.nonces = NonceClaims(app.state.redis)
    app.state.accounts = AccountCache()
    app.state.scripts = CallScripts()
    # Callbacks are applied in the commit that stores them (the applier thread takes what that leaves).
    app.state.writer = EventWriter(settings.psycopg_url, connect, stored,
                                   apply=apply_on_store if app.state.apply_events else None)
    # /metrics reads the state at most every DIALER_METRICS_REFRESH_S, on the collector's one connection.
    app.state.metrics_state = StateSnapshot(state_collector(settings.psycopg_url, settings.redis_url),
                                            settings.metrics_refresh_s)
    app.state.writer.start()
    applier = EventApplier(stored) if app.state.apply_events else None
    if applier:
        applier.start()
    try:
        yield
    finally:
        if applier:
            applier.stop()
            applier.join(timeout=5)
        await app.state.writer.stop()
        await asyncio.to_thread(app.state.metrics_state.close)
        await app.state.redis.aclose()
        await pool.close()


def create_app(*, apply_events: bool = True) -> FastAPI:
    app = FastAPI(title="dialer", version="0.1.0", lifespan=lifespan)
    app.state.apply_events = apply_events
    app.add_exception_handler(StarletteHTTPException, answer_http_exception)
    app.add_middleware(RequestGuard)  # the API key, the body cap and deadline, before any body is read
    app.include_router(callbacks_router)
    app.include_router(campaigns_router)
    app.include_router(dnc_router)
    app.include_router(accounts_router)
    app.include_router(health_router)
    app.include_router(runs_router)
    app.include_router(retirement_router)
    app.include_router(console_router)  # the operator console, /ui (its own session cookie and CSRF)
    app.include_router(api_keys_router)
    app.include_router(webhooks_router)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
