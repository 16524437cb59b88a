"""Outbound webhooks: one delivery pass. It claims the due head of each (endpoint, order key) queue from the
outbox (campaigns.webhook_outbox), signs each event with its endpoint's secret (Standard Webhooks, the
`standardwebhooks` package: webhook-id, webhook-timestamp, webhook-signature), POSTs it, and records each
result, until nothing is due or its time is up.

Off the dial path and bounded: the pass runs on the `webhooks` queue, which dial workers do not consume; at
most DIALER_WEBHOOK_CONCURRENCY POSTs are in flight (half of them for one endpoint at most), each on its own
client (no redirects, DIALER_WEBHOOK_TIMEOUT_S per phase and, waited for, twice that in all), and the pass
stops claiming after DIALER_WEBHOOK_PASS_S. A receiver that is slow or down costs this pass its timeouts and
nothing else: nothing of the dial path waits for it or shares its connections."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import psycopg
from standardwebhooks import Webhook

from campaigns.config import Settings
from campaigns.secrets_box import decrypt
from campaigns.webhook_endpoints import private_address
from campaigns.webhook_outbox import ClaimedSend, TryResult, claim_sends, record_tries, retry_delay_s

log = logging.getLogger(__name__)

USER_AGENT = "dialer-webhooks/1"
LEASE_MARGIN_S = 30.0  # a claimed send not recorded by then (its process died) is due again


@dataclass
class PassReport:
    sent: int = 0
    delivered: int = 0
    failed_tries: int = 0


_client_lock = threading.Lock()
_client: httpx.Client | None = None


def webhook_client(settings: Settings) -> httpx.Client:
    """The process's client for webhooks, apart from the carriers' (workers.providers.http): no redirects
    followed (a 3xx is a failed try), a pool as wide as the pass's concurrency, the webhook timeout."""
    global _client
    with _client_lock:
        if _client is None:
            size = settings.webhook_concurrency
            _client = httpx.Client(
                timeout=httpx.Timeout(settings.webhook_timeout_s),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            )
        return _client


def address_refusal(url: str) -> str | None:
    """Outside development: why the URL's host must not be sent to (it resolves to a loopback, private or
    link-local address: SSRF into our own network), or None."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = str(info[4][0])
        if private_address(address):
            return f"refused: {host} resolves to a non-public address ({address})"
    return None


def signed_headers(send: ClaimedSend, secret: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one try: the id is the delivery's (the same on every try, the
    receiver's idempotency key), the timestamp and signature this try's."""
    signature = Webhook(secret).sign(send.message_id, now, send.body)
    return {"webhook-id": send.message_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature}


def post_once(client: httpx.Client, send: ClaimedSend, *, development: bool) -> tuple[int | None, str | None]:
    """One POST: (status, None), or (None, why no status came)."""
    if not development:
        refusal = address_refusal(send.url)
        if refusal is not None:
            return None, refusal
    try:
        headers = signed_headers(send, decrypt(send.secret_encrypted), datetime.now(UTC))
        response = client.post(send.url, content=send.body.encode(), headers=headers)
    except httpx.TimeoutException as exc:
        return None, f"timed out ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"
    except Exception as exc:  # an unreadable secret, a bad URL: a failed try, never a dead pass
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"
    return response.status_code, None if response.is_success else f"answered {response.status_code}"


def try_sends(sends: list[ClaimedSend], settings: Settings, pool: ThreadPoolExecutor) -> list[TryResult]:
    """POST each claimed send, at most the pool's width at once; a POST not back within twice the timeout
    counts as timed out (its thread ends at its own timeout)."""
    client = webhook_client(settings)
    futures = {pool.submit(post_once, client, s, development=settings.development): s for s in sends}
    done, _ = wait(futures, timeout=settings.webhook_timeout_s * 2 + 1)
    results = []
    for future, send in futures.items():
        status, error = future.result() if future in done else (None, "timed out (no answer in time)")
        delay = retry_delay(send.tries, settings)
        results.append(TryResult(send.id, status, error, delay))
    return results


def retry_delay(tries: int, settings: Settings) -> float:
    return retry_delay_s(tries, base_s=settings.webhook_backoff_base_s, max_s=settings.webhook_backoff_max_s,
                         rand=random.random())


def deliver_pass(conn: psycopg.Connection, settings: Settings) -> PassReport:
    """Claim, send and record until nothing is due or DIALER_WEBHOOK_PASS_S has passed."""
    report = PassReport()
    width = settings.webhook_concurrency
    deadline = time.monotonic() + settings.webhook_pass_s
    lease_s = settings.webhook_timeout_s * 2 + LEASE_MARGIN_S
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="webhook")
    try:
        while time.monotonic() < deadline:
            sends = claim_sends(conn, limit=width, per_endpoint=max(1, width // 2), lease_s=lease_s)
            if not sends:
                break
            results = try_sends(sends, settings, pool)
            record_tries(conn, results, retry_for_s=settings.webhook_retry_for_s)
            report.sent += len(results)
            report.delivered += sum(r.delivered for r in results)
            report.failed_tries += sum(not r.delivered for r in results)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a POST past its wait ends at its own timeout
    if report.failed_tries:
        log.warning("webhooks: %d of %d tries failed; they are retried with backoff", report.failed_tries,
                    report.sent)
    return report
