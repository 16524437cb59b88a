"""Prometheus metrics of the engine (prometheus_client), named by Prometheus conventions: `dialer_` prefix,
base units (seconds), `_total` on counters. Labels are bounded: account and campaign ids, queue names,
outcomes; never a phone number.

Two kinds:
- In-process counters and histograms, updated where the thing happens (a worker's dial requests, the
  send lateness; Celery's tasks in workers.metrics.task_metrics). Each process serves its own on /metrics
  (the API route; workers.metrics.worker_server on each worker). With PROMETHEUS_MULTIPROC_DIR set (prefork
  or several uvicorn processes) they are summed across the processes of the host (`registry()`).
- State read at scrape time from Postgres and Redis by workers.metrics.state_collector (calls per campaign and
  outcome, live calls, CPS used, queues, callback lag, attempts past their lease, rows of every load). It is
  served by the API only, so a state counted once is exported once whatever the number of workers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.registry import REGISTRY

# Defined beside the booking that observes it; exported here with the engine's other metrics.
from workers.metrics.send_lateness import SEND_LATENESS as SEND_LATENESS
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials, CallsAccepted, OutboundCall
from workers.providers.errors import ProviderError

disable_created_metrics()  # no `_created` series beside every counter: nobody graphs them

REQUESTS = Counter(
    "dialer_provider_requests_total",
    "Call-creation requests sent to the carrier, by how they ended",
    ["account", "result"],  # result: accepted, throttled, rejected, auth_failed, transient, ambiguous
)
CALLS_SENT = Counter(
    "dialer_calls_sent_total",
    "Destinations in call-creation requests the carrier accepted",
    ["account", "campaign"],
)
THROTTLED = Counter(
    "dialer_throttled_total", "429s (or carrier-side limits) met when creating calls", ["account"]
)
REJECTED_CALLBACKS_UNKEPT = Counter(
    "dialer_rejected_callbacks_unkept_total",
    "Callbacks refused as malformed and not kept: their account was past its hourly cap (API process)",
    ["account"],
)


def registry() -> CollectorRegistry:
    """What /metrics serves from this process: the default registry, or every process's values when
    PROMETHEUS_MULTIPROC_DIR is set."""
    # Not a setting: prometheus_client itself reads this variable to decide where every process writes.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def result_name(exc: ProviderError) -> str:
    """The error type's name in snake case (workers.providers.errors): AuthFailed -> auth_failed."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def count_request(account_id: int, result: str, campaign_id: int | None = None, sent: int = 0) -> None:
    """One call-creation request and how it ended; never raises (metrics must not break a dial)."""
    try:
        REQUESTS.labels(str(account_id), result).inc()
        if result == "throttled":
            THROTTLED.labels(str(account_id)).inc()
        if sent and campaign_id is not None:
            CALLS_SENT.labels(str(account_id), str(campaign_id)).inc(sent)
    except Exception:  # pragma: no cover - prometheus_client does not raise here in practice
        pass


def counted_create_calls(
    adapter: ProviderAdapter,
    client: httpx.Client,
    creds: AccountCredentials,
    call: OutboundCall,
    campaign_id: int,
) -> CallsAccepted:
    """adapter.create_calls, with the request counted by how it ended (the exception passes through)."""
    return counted_request(lambda: adapter.create_calls(client, creds, call), creds, call, campaign_id)


def counted_request(
    send: Callable[[], CallsAccepted], creds: AccountCredentials, call: OutboundCall, campaign_id: int
) -> CallsAccepted:
    """One create request however it is sent (timed or not), counted by how it ended."""
    try:
        accepted = send()
    except ProviderError as exc:
        count_request(creds.account_id, result_name(exc))
        raise
    count_request(creds.account_id, "accepted", campaign_id, sent=len(call.destinations))
    return accepted
