"""The Celery application: queues, delivery guarantees and the beat schedule, each setting explained.

Queues are named in workers.queues: `dial` (dial-chunk tasks, the hot path), `results` (applying stored
callbacks), `housekeeping` (dispatcher tick, reaper, scheduled runs), `webhooks` (outbound webhook delivery,
consumed by its own worker only).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.signals import beat_init, worker_init, worker_process_init, worker_ready, worker_shutdown
from kombu.entity import Exchange, Queue

from campaigns.config import get_settings
from campaigns.db import SchemaMissing, connect, require_schema
from campaigns.errors import ServiceUnavailable
from workers import redis_keys
from workers.dispatch.refill import start_line_refill, stop_line_refill
from workers.metrics import (
    task_metrics,  # noqa: F401  (connects the signals that count tasks)
    worker_server,  # noqa: F401  (connects the worker_init signal that serves /metrics)
)
from workers.queues import DECLARED_QUEUES, DIAL_QUEUE, HOUSEKEEPING_QUEUE, RESULTS_QUEUE, WEBHOOKS_QUEUE
from workers.runtime import process_logging  # noqa: F401  (connects after_setup_logger: no line per task)
from workers.runtime.beat_schedule import redbeat_settings
from workers.runtime.task_labels import dial_chunk_options

DISPATCH_INTERVAL_S = 1.0
REAPER_INTERVAL_S = 5.0
APPLY_EVENTS_INTERVAL_S = 2.0
RUN_SCHEDULER_INTERVAL_S = 5.0  # scheduled runs start within this of their cron time
CALL_LIMITS_INTERVAL_S = 1.0  # calls the dialer ends itself (VoIPbin; Vobiz rings) end within this of a limit
WEBHOOKS_KICK_INTERVAL_S = 1.0  # a due webhook is handed to a delivery pass within this
PRUNE_INTERVAL_S = 86400.0  # retention, when DIALER_PRUNE_OLDER_THAN is set: daily


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("dialer", broker=settings.redis_url, include=["workers.runtime.tasks"])
    app.conf.update(
        # At-least-once delivery: a task is acknowledged after it ran, so a crash re-delivers it.
        # Re-delivery is safe because the attempt row, not Celery, guards against a second dial.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message reserved at a time per worker slot: a crashed worker strands little work,
        # and the dispatcher's back-pressure is not defeated by prefetching.
        worker_prefetch_multiplier=1,
        broker_transport_options={
            # Unacked messages come back after this long. Dial chunks finish within seconds, and the
            # dispatcher reclaims stale `queued` destinations itself, so this only bounds the worst case.
            "visibility_timeout": 300,
            # Every broker key under the deployment's prefix, so test sessions and deployments share Redis.
            "global_keyprefix": redis_keys.broker_prefix(),
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=DIAL_QUEUE,
        # Each queue its own exchange and routing key: a shared default would deliver every task to all three.
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in DECLARED_QUEUES
        ],
        task_routes={
            "workers.tasks.dial_chunk": {"queue": DIAL_QUEUE},
            "workers.tasks.apply_pending_events": {"queue": RESULTS_QUEUE},
            "workers.tasks.dispatch_tick": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.reap_expired_attempts": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.start_scheduled_runs": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.enforce_call_limits": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.prune_old_rows": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.kick_webhook_deliveries": {"queue": HOUSEKEEPING_QUEUE},
            "workers.tasks.deliver_webhooks": {"queue": WEBHOOKS_QUEUE},
        },
        # Pacing lives in Postgres (next_attempt_at) and Redis, never in ETAs: a beat tick that is
        # late is simply dropped rather than piling up.
        task_time_limit=120,
        task_soft_time_limit=100,
        beat_schedule={
            "dispatch": {
                "task": "workers.tasks.dispatch_tick",
                "schedule": DISPATCH_INTERVAL_S,
                "options": {"expires": DISPATCH_INTERVAL_S * 2},
            },
            "reap": {
                "task": "workers.tasks.reap_expired_attempts",
                "schedule": REAPER_INTERVAL_S,
                "options": {"expires": REAPER_INTERVAL_S * 2},
            },
            "scheduled-runs": {
                "task": "workers.tasks.start_scheduled_runs",
                "schedule": RUN_SCHEDULER_INTERVAL_S,
                "options": {"expires": RUN_SCHEDULER_INTERVAL_S * 2},
            },
            "apply-events": {
                "task": "workers.tasks.apply_pending_events",
                "schedule": APPLY_EVENTS_INTERVAL_S,
                "options": {"expires": APPLY_EVENTS_INTERVAL_S * 2},
            },
            "call-limits": {
                "task": "workers.tasks.enforce_call_limits",
                "schedule": CALL_LIMITS_INTERVAL_S,
                "options": {"expires": CALL_LIMITS_INTERVAL_S * 2},
            },
            "webhooks": {
                "task": "workers.tasks.kick_webhook_deliveries",
                "schedule": WEBHOOKS_KICK_INTERVAL_S,
                "options": {"expires": WEBHOOKS_KICK_INTERVAL_S * 2},
            },
        },
        # Beat's schedule and its one-beat lock live in Redis under the deployment's prefix (celery-redbeat).
        **redbeat_settings(),
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
    )
    if settings.prune_older_than:  # retention is off unless asked for (campaigns.retention)
        app.conf.beat_schedule["prune"] = {
            "task": "workers.tasks.prune_old_rows",
            "schedule": PRUNE_INTERVAL_S,
            "options": {"expires": 3600},
        }
    return app


app = make_app()


@worker_init.connect
@beat_init.connect
def _refuse_a_database_without_the_schema(**_: Any) -> None:
    """A worker or beat started before `dialer db init` says so in one line and stops, instead of a
    traceback per task. An unreachable Postgres is not this: the tasks wait for it and retry."""
    try:
        with connect() as conn:
            require_schema(conn)
    except SchemaMissing as exc:
        sys.stderr.write(f"dialer: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    except ServiceUnavailable:
        pass



def _enqueue_refill_chunk(campaign_id: int, destination_ids: list[int], account_id: int) -> None:
    """A refill's chunk, sent by name as workers.runtime.tasks.enqueue_chunk sends it (that module imports
    this one)."""
    app.send_task("workers.tasks.dial_chunk", args=(campaign_id, destination_ids, account_id),
                  queue=DIAL_QUEUE, **dial_chunk_options(campaign_id, destination_ids, account_id))


@worker_process_init.connect
def _refill_lines_in_the_pool_process(**_: Any) -> None:
    """Prefork children and the solo pool: each process listens for freed lines (workers.dispatch.refill).
    Started here, after the fork, never in a parent that forks: a thread's held locks would be copied."""
    start_line_refill(_enqueue_refill_chunk)


@worker_ready.connect
def _refill_lines_in_the_threads_worker(sender: Any = None, **_: Any) -> None:
    """The threads pool (our workers') sends no worker_process_init: its one process listens from here."""
    if isinstance(getattr(sender, "pool", None), ThreadsPool):
        start_line_refill(_enqueue_refill_chunk)


@worker_shutdown.connect
def _stop_refilling_lines(**_: Any) -> None:
    stop_line_refill()
