"""Celery tasks: thin shells over workers.dispatch.dispatcher, workers.dialing.chunk, workers.callbacks.applier_store and
workers.housekeeping.reaper."""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx

from workers import redis_keys
from workers.pg import get_pool
from workers.queues import DIAL_QUEUE
from workers.ratelimit.process_budgets import get_budgets
from workers.runtime.celery_app import app
from workers.runtime.task_labels import dial_chunk_options

log = logging.getLogger(__name__)

SAFETY_NET_PAGE = 2000

_client_lock = threading.Lock()
_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One pooled httpx client per worker process, shared by its threads."""
    global _client
    with _client_lock:
        if _client is None:
            from workers.providers.http import make_client

            _client = make_client()
        return _client


_dial_client: httpx.Client | None = None


def dial_client() -> httpx.Client:
    """The client dial chunks send through: its requests go to this process's timed sender
    (workers.dialing.timed_sender), which makes each leave at its booked send time."""
    global _dial_client
    with _client_lock:
        if _dial_client is None:
            from workers.dialing.timed_sender import ScheduledTransport, process_sender
            from workers.providers.http import make_client

            _dial_client = make_client(transport=ScheduledTransport(process_sender()))
        return _dial_client


def _locked(lock_key: str, ttl_ms: int) -> bool:
    """Take a short Redis lock so overlapping beat ticks (or two beats) do not run the same pass twice."""
    return bool(get_budgets().client.set(lock_key, "1", nx=True, px=ttl_ms))


@app.task(name="workers.tasks.dial_chunk", acks_late=True)
def dial_chunk(campaign_id: int, destination_ids: list[int]) -> dict[str, Any]:
    """Dial the still-queued destinations of one chunk (safe to run twice: see campaigns.store.dial_store)."""
    from workers.dialing.chunk import DialContext
    from workers.dialing.chunk import dial_chunk as run_chunk

    with get_pool().connection() as conn:
        ctx = DialContext(conn=conn, client=dial_client(), budgets=get_budgets())
        report = run_chunk(ctx, campaign_id, destination_ids)
    return report.__dict__


def enqueue_chunk(campaign_id: int, destination_ids: list[int]) -> None:
    labels = dial_chunk_options(campaign_id, destination_ids)  # how Flower shows and finds it
    dial_chunk.apply_async(args=(campaign_id, destination_ids), queue=DIAL_QUEUE, **labels)


@app.task(name="workers.tasks.dispatch_tick", ignore_result=True)
def dispatch_tick() -> dict[str, Any] | None:
    """Claim due destinations and enqueue dial chunks, within the budgets' horizon."""
    from workers.dispatch.dispatcher import dispatch_tick as run_tick

    if not _locked(redis_keys.dispatch_lock(), 5000):
        return None
    try:
        with get_pool().connection() as conn:
            report = run_tick(conn, get_budgets(), enqueue_chunk)
        return {"claimed": report.claimed, "chunks": report.chunks, "completed": report.completed}
    finally:
        get_budgets().client.delete(redis_keys.dispatch_lock())


_safety_net_cursor = 0  # per worker process: where the last full page ended


@app.task(name="workers.tasks.apply_pending_events", ignore_result=True)
def apply_pending_events() -> int:
    """Safety net for the API's own applier: apply stored events it left for over 10 s (an API process
    that died between storing and applying). Recent ones are left to the API so the two do not contend.
    Pages through, so old events that never match cannot keep newer ones waiting."""
    from workers.callbacks.applier_store import apply_events, left_over_after

    global _safety_net_cursor
    with get_pool().connection() as conn:
        report = apply_events(conn, left_over_after(_safety_net_cursor), SAFETY_NET_PAGE)
    _safety_net_cursor = report.last_id if report.seen >= SAFETY_NET_PAGE else 0
    return report.applied


@app.task(name="workers.tasks.reap_expired_attempts", ignore_result=True)
def reap_expired_attempts() -> dict[str, int] | None:
    """Resolve attempts past their lease without a final event."""
    from workers.housekeeping.reaper import reap_expired_attempts as run_reaper

    if not _locked(redis_keys.reaper_lock(), 60000):
        return None
    try:
        with get_pool().connection() as conn:
            return run_reaper(conn, http_client(), get_budgets()).__dict__
    finally:
        get_budgets().client.delete(redis_keys.reaper_lock())


@app.task(name="workers.tasks.start_scheduled_runs", ignore_result=True)
def start_scheduled_runs() -> dict[str, Any] | None:
    """Scheduled runs (workers.housekeeping.run_scheduler): close finished runs, end runs at their end, start due ones."""
    from datetime import UTC, datetime

    from workers.housekeeping.run_scheduler import run_scheduler_tick

    if not _locked(redis_keys.run_scheduler_lock(), 30000):
        return None
    try:
        with get_pool().connection() as conn:
            report = run_scheduler_tick(conn, datetime.now(UTC))
        return {"started": report.started, "ended": report.ended, "closed": report.closed}
    finally:
        get_budgets().client.delete(redis_keys.run_scheduler_lock())
