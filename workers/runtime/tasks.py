"""Celery tasks: thin shells over the wings. Each builds its context (a pooled connection, the process's
budgets and HTTP client) and calls the one function that does the work: workers.dialing.chunk.dial_chunk,
workers.dispatch.dispatcher.dispatch_tick, workers.callbacks.applier.apply_events,
workers.housekeeping.reaper.reap_expired_attempts and workers.housekeeping.run_scheduler.run_scheduler_tick.

The task names are the ones the tasks had before the engine was split into wings (`workers.tasks.*`):
messages already queued under them must still run after an upgrade."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from campaigns.config import get_settings
from campaigns.durations import parse_duration
from campaigns.errors import ServiceUnavailable
from campaigns.retention import prune
from campaigns.store.claims import release_failed_chunk
from campaigns.store.dial_store import QUEUED_LEASE_S
from campaigns.webhook_outbox import any_due
from workers import redis_keys
from workers.callbacks.applier import apply_events, left_over_after
from workers.dialing.chunk import dial_chunk as dial_claimed_chunk
from workers.dialing.context import ChunkReport, DialContext
from workers.dialing.timed_sender import process_sender, timed_client
from workers.dispatch.dispatcher import dispatch_tick as claim_and_enqueue
from workers.held_lock import held_lock
from workers.housekeeping.call_limits import enforce_call_limits as end_calls_at_their_limits
from workers.housekeeping.reaper import reap_expired_attempts as reap_open_attempts
from workers.housekeeping.run_scheduler import run_scheduler_tick
from workers.housekeeping.webhook_delivery import deliver_pass
from workers.pg import get_pool, on_fresh_connection
from workers.providers.http import shared_client
from workers.queues import DIAL_QUEUE, WEBHOOKS_QUEUE
from workers.ratelimit.process_budgets import get_budgets
from workers.ratelimit.slots import by_budget
from workers.runtime.celery_app import app
from workers.runtime.task_labels import dial_chunk_options

log = logging.getLogger(__name__)

SAFETY_NET_PAGE = 2000

_client_lock = threading.Lock()
_dial_client: httpx.Client | None = None


def dial_client() -> httpx.Client:
    """The client dial chunks send through: adapters build their create requests on it, and it carries this
    process's timed sender (workers.dialing.timed_sender), which makes each leave at its booked send time."""
    global _dial_client
    with _client_lock:
        if _dial_client is None:
            _dial_client = timed_client(process_sender())
        return _dial_client


@contextmanager
def single_flight(lock_key: str, ttl_ms: int) -> Iterator[bool]:
    """Hold a short Redis lock for the block, so overlapping beat ticks (or two beats) do not run the same
    pass twice; yields False (and holds nothing) when another holder has it. The TTL frees the lock of a
    process that died holding it. Released only while still ours: a pass that outlived the TTL (waiting for
    a connection while Postgres was away) must not free the lock of the pass that took it after."""
    with held_lock(get_budgets().client, lock_key, ttl_ms / 1000) as mine:
        yield mine


# Postgres away: the connection ended or refused (a restart, a failover), no pooled one in time, a deadlock
# or a cancelled statement. A chunk that fails on one hands its claims back at once. Any other error is a
# defect: its claims wait out their lease, so a destination that always fails is not retried every tick.
DATABASE_AWAY = (psycopg.OperationalError, ServiceUnavailable)


@app.task(name="workers.tasks.dial_chunk", acks_late=True)
def dial_chunk(campaign_id: int, destination_ids: list[int], account_id: int | None = None) -> dict[str, Any]:
    """Dial the still-queued destinations of one chunk on the account the dispatcher named (a message from
    before accounts were named has none: the campaign's primary). Safe to run twice: see
    campaigns.store.dial_store."""
    try:
        with get_pool().connection() as conn:
            ctx = DialContext(conn=conn, client=dial_client(), budgets=get_budgets())
            report = dial_claimed_chunk(ctx, campaign_id, destination_ids, account_id)
    except DATABASE_AWAY as exc:
        report = hand_back_claims(campaign_id, destination_ids, exc)
    return report.__dict__


def hand_back_claims(campaign_id: int, destination_ids: list[int], exc: Exception) -> ChunkReport:
    """The chunk stopped on a database error: as soon as Postgres accepts a connection, what of it provably
    never reached the carrier goes back to `pending`, due now (campaigns.store.claims.release_failed_chunk:
    destinations still `queued`, and attempts started but never marked as sending, whose slots are freed
    here). The dispatcher claims them again within a tick, instead of after the claim lease (QUEUED_LEASE_S,
    which its back-pressure would wait out) or the reaper's never-sent grace. Attempts marked as sending are
    the send evidence's. Tried for the length of the lease; past it the dispatcher and the reaper take them
    back anyway."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    report = ChunkReport(errors=[f"{type(exc).__name__}: {first_line}"])
    try:
        released = on_fresh_connection(
            lambda conn: release_failed_chunk(conn, destination_ids), within_s=QUEUED_LEASE_S
        )
    except DATABASE_AWAY:
        log.warning("dial chunk of campaign %s stopped (%s) and Postgres stayed away: its %d destinations "
                    "return at their claim lease or the never-sent grace", campaign_id, report.errors[0],
                    len(destination_ids))
        return report
    budgets = get_budgets()
    for (account_id, slot_campaign_id), members in by_budget(released.slots).items():
        budgets.release(account_id, slot_campaign_id, members)
    report.handed_back = released.destinations
    log.warning("dial chunk of campaign %s stopped (%s): %d destinations handed back (%d never-sent attempts "
                "undone)", campaign_id, report.errors[0], released.destinations, len(released.slots))
    return report



def enqueue_chunk(campaign_id: int, destination_ids: list[int], account_id: int) -> None:
    labels = dial_chunk_options(campaign_id, destination_ids, account_id)  # how Flower shows and finds it
    dial_chunk.apply_async(args=(campaign_id, destination_ids, account_id), queue=DIAL_QUEUE, **labels)


@app.task(name="workers.tasks.dispatch_tick", ignore_result=True)
def dispatch_tick() -> dict[str, Any] | None:
    """Claim due destinations and enqueue dial chunks, within the budgets' horizon."""
    with single_flight(redis_keys.dispatch_lock(), 5000) as mine:
        if not mine:
            return None
        with get_pool().connection() as conn:
            report = claim_and_enqueue(conn, get_budgets(), enqueue_chunk)
        return {"claimed": report.claimed, "chunks": report.chunks, "completed": report.completed}


_safety_net_cursor = 0  # per worker process: where the last full page ended


@app.task(name="workers.tasks.apply_pending_events", ignore_result=True)
def apply_pending_events() -> int:
    """Safety net for the API's own applier: apply stored events it left for over 10 s (an API process
    that died between storing and applying). Recent ones are left to the API so the two do not contend.
    Pages through, so old events that never match cannot keep newer ones waiting."""
    global _safety_net_cursor
    with get_pool().connection() as conn:
        report = apply_events(conn, left_over_after(_safety_net_cursor), SAFETY_NET_PAGE)
    _safety_net_cursor = report.last_id if report.seen >= SAFETY_NET_PAGE else 0
    return report.applied


@app.task(name="workers.tasks.reap_expired_attempts", ignore_result=True)
def reap_expired_attempts() -> dict[str, int] | None:
    """Resolve attempts past their lease without a final event."""
    with single_flight(redis_keys.reaper_lock(), 60000) as mine:
        if not mine:
            return None
        with get_pool().connection() as conn:
            return reap_open_attempts(conn, shared_client(), get_budgets()).__dict__


@app.task(name="workers.tasks.start_scheduled_runs", ignore_result=True)
def start_scheduled_runs() -> dict[str, Any] | None:
    """Scheduled runs (workers.housekeeping.run_scheduler): close finished runs, end runs at their end,
    start due ones."""
    with single_flight(redis_keys.run_scheduler_lock(), 30000) as mine:
        if not mine:
            return None
        with get_pool().connection() as conn:
            report = run_scheduler_tick(conn, datetime.now(UTC))
        return {"started": report.started, "ended": report.ended, "closed": report.closed}


@app.task(name="workers.tasks.enforce_call_limits", ignore_result=True)
def enforce_call_limits() -> dict[str, int] | None:
    """End calls at the ring timeout or time limit their carrier was not told
    (workers.housekeeping.call_limits): only the requests due now are looked at."""
    budgets = get_budgets()
    due_by = budgets.client.zrangebyscore(redis_keys.call_limit_checks(), "-inf", time.time(), start=0, num=1)
    if not due_by:
        return None  # the usual tick: nothing due, no database connection taken
    with get_pool().connection() as conn:
        report = end_calls_at_their_limits(conn, budgets.client, shared_client())
    return {"checked": report.checked, "hung_up": report.hung_up, "already_ended": report.already_ended}


# Above the default 120 s: a first prune of a large table takes longer, and each batch it commits is kept if
# it is stopped anyway.
PRUNE_TIME_LIMIT_S = 3600


@app.task(name="workers.tasks.prune_old_rows", ignore_result=True, time_limit=PRUNE_TIME_LIMIT_S,
          soft_time_limit=PRUNE_TIME_LIMIT_S - 60)
def prune_old_rows() -> dict[str, int] | None:
    """Retention (campaigns.retention), daily from beat when DIALER_PRUNE_OLDER_THAN is set; nothing
    otherwise."""
    older_than = get_settings().prune_older_than
    if not older_than:
        return None
    with get_pool().connection() as conn:
        report = prune(conn, older_than=parse_duration(older_than))
    log.info("pruned what was received before %s: %s", report.cutoff, report.deleted)
    return report.deleted



def webhook_pass_mark_s() -> float:
    """How long a queued or running delivery pass is remembered: longer than a pass can take, so a second one
    is not queued behind it; short enough that a pass whose process died is followed by another."""
    settings = get_settings()
    return settings.webhook_pass_s + settings.webhook_timeout_s * 2 + 30


@app.task(name="workers.tasks.kick_webhook_deliveries", ignore_result=True)
def kick_webhook_deliveries() -> bool:
    """Every second from beat, on the housekeeping queue: when a webhook is due and no delivery pass is queued
    or running, queue one on the webhooks queue. Nothing due costs one look at an index and queues nothing,
    so a deployment without webhooks (or without a webhooks worker yet) does not fill the webhooks queue."""
    with get_pool().connection() as conn:
        if not any_due(conn):
            return False
    mark_s = webhook_pass_mark_s()
    if not get_budgets().client.set(redis_keys.webhook_pass(), "1", nx=True, ex=int(mark_s)):
        return False
    deliver_webhooks.apply_async(queue=WEBHOOKS_QUEUE, expires=mark_s)
    return True


@app.task(name="workers.tasks.deliver_webhooks", ignore_result=True)
def deliver_webhooks() -> dict[str, int]:
    """One delivery pass (workers.housekeeping.webhook_delivery): claim, sign, POST and record until nothing
    is due or the pass's time is up; then the next kick may queue another."""
    try:
        with get_pool().connection() as conn:
            report = deliver_pass(conn, get_settings())
    finally:
        get_budgets().client.delete(redis_keys.webhook_pass())
    return report.__dict__
