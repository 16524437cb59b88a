"""The shared pooled httpx client and the one place a carrier's HTTP answer or httpx error becomes ours.

Nothing here retries: a create POST is sent exactly once and the dialer decides what a failure means
(docs/DESIGN.md, "Errors"). `send` maps every failure to workers.providers.errors:

ConnectError / ConnectTimeout / PoolTimeout / other pre-send errors -> Transient (nothing was sent)
ReadTimeout / WriteTimeout / ReadError / WriteError / RemoteProtocolError / others -> Ambiguous
429 -> Throttled(retry_after)   400/422 and other 4xx -> Rejected   401/403/404 -> AuthFailed
402 -> PaymentRequired   3xx (redirects are not followed) -> AuthFailed (wrong base URL)
503 with Retry-After (the carrier's limiter: it says outright nothing was placed) -> Transient(retry_after)
any other 5xx -> Ambiguous: a gateway error at the carrier's edge is sent after the call may have been placed
(idempotent status GETs: Transient, there is nothing to place)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from workers.providers.calls import AccountCredentials
from workers.providers.errors import (
    Ambiguous,
    AuthFailed,
    PaymentRequired,
    ProviderError,
    Rejected,
    Throttled,
    Transient,
)
from workers.providers.redaction import REDACTED as REDACTED  # re-exported: the marker callers look for
from workers.providers.redaction import redact_secrets, secret_forms
from workers.providers.signatures import bandwidth_callback_credentials

TIMEOUT = httpx.Timeout(connect=3.0, read=10.0, write=5.0, pool=5.0)
KEEPALIVE_EXPIRY = 30.0
USER_AGENT = "dialer/0.1 (+bulk-dialing campaign worker)"
MESSAGE_LIMIT = 500
# httpx logs every request line at INFO, query string included: VoIPbin's token travels there.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Raised before a byte of the request could reach the carrier: nothing was placed.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def make_client(*, transport: httpx.BaseTransport | None = None, max_connections: int = 64) -> httpx.Client:
    """A pooled keep-alive client for ~64 concurrent requests; share one per process."""
    return httpx.Client(transport=transport, **client_options(max_connections))


_shared_lock = threading.Lock()
_shared: httpx.Client | None = None


def shared_client() -> httpx.Client:
    """The process's one pooled client for unbooked requests (lookups, hang-ups), made on first use and
    shared by its threads: a worker's reaper and call limits, the API's machine hang-ups."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = make_client()
        return _shared


def client_options(max_connections: int = 64) -> dict[str, Any]:
    """The settings of every carrier client: timeouts, a keep-alive pool, no redirects, our User-Agent."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    return {
        "timeout": TIMEOUT,
        "limits": limits,
        "follow_redirects": False,
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
    }


def send(
    client: httpx.Client, request: httpx.Request, account: AccountCredentials, *, idempotent: bool = False
) -> httpx.Response:
    """Send once on `client`; return a 2xx response or raise the ProviderError it means.

    `idempotent` requests (status GETs) map timeouts after sending to Transient instead of Ambiguous."""
    return sent_once(client.send, request, account, idempotent=idempotent)


def sent_once(
    transmit: Callable[[httpx.Request], httpx.Response],
    request: httpx.Request,
    account: AccountCredentials,
    *,
    idempotent: bool = False,
) -> httpx.Response:
    """`transmit(request)` once (a client's send, or the dialer's timed sender); a 2xx response, or the
    ProviderError the failure means. Anything `transmit` raises that is not an httpx error passes through."""
    try:
        response = transmit(request)
    except NOT_SENT_ERRORS as exc:
        raise Transient(redact(f"{account.provider}: request not sent ({type(exc).__name__}: {exc})",
                               account)) from None
    except httpx.TransportError as exc:
        error = Transient if idempotent else Ambiguous
        message = (f"{account.provider}: no answer after sending ({type(exc).__name__}: {exc}); "
                   "the call may be live")
        raise error(redact(message, account)) from None
    if response.is_success:
        return response
    failure = error_for_response(response, account)
    if idempotent and isinstance(failure, Ambiguous):  # a GET places nothing: just try again later
        failure = Transient(failure.message, status=failure.status)
    raise failure


def error_for_response(
    response: httpx.Response, account: AccountCredentials, now: datetime | None = None
) -> ProviderError:
    """The ProviderError a non-2xx carrier answer means."""
    status = response.status_code
    message = redact(provider_message(response), account)  # a carrier may echo the credentials it refuses
    who = f"{account.provider} account {account.account_id} (auth id {account.auth_id})"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=now)
        return Throttled(f"{account.provider} throttled the request: {message}", retry_after=retry_after)
    if status in (401, 403):
        return AuthFailed(
            f"{who}: credentials refused (HTTP {status}: {message}); "
            "check the auth id and token in the provider account settings",
            status=status,
        )
    if status == 404:
        return AuthFailed(
            f"{who}: account or endpoint not found (HTTP 404: {message}); "
            f"check the auth id and base URL {account.base_url}",
            status=status,
        )
    if status == 402:
        return PaymentRequired(
            f"{who}: balance too low (HTTP 402: {message}); top up the account", status=status
        )
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=now)
        if status == 503 and retry_after is not None:
            return Transient(
                f"{account.provider} unavailable, nothing placed (HTTP 503, Retry-After {retry_after:g} s): "
                f"{message}",
                status=status,
                retry_after=retry_after,
            )
        return Ambiguous(
            f"{account.provider} server error HTTP {status} after the request arrived: {message}; "
            "the call may have been placed",
            status=status,
        )
    if 300 <= status < 400:
        return AuthFailed(
            f"{who}: unexpected redirect HTTP {status} to {response.headers.get('location')}; "
            f"check the base URL {account.base_url}",
            status=status,
        )
    if status == 408:
        return Transient(f"{account.provider} timed out reading the request (HTTP 408)", status=status)
    return Rejected(f"{account.provider} rejected the request (HTTP {status}): {message}", status=status)


def redact(text: str, account: AccountCredentials, *, limit: int = MESSAGE_LIMIT) -> str:
    """`text` without the account's secrets in any form a carrier may echo, then shortened to `limit`:
    error messages end up in logs, campaign state reasons and API answers (workers.providers.redaction)."""
    return redact_secrets(text, account_secret_forms(account), limit=limit)


def account_secret_forms(account: AccountCredentials) -> set[str]:
    """Every form of the account's token, webhook secret and (Bandwidth) per-call callback password."""
    usernames = (account.auth_id, str(account.options.get("api_username") or ""))
    forms = secret_forms(account.auth_token, basic_usernames=usernames)
    if account.webhook_secret:
        forms |= secret_forms(account.webhook_secret)
    if account.provider == "bandwidth":  # its create body carries the callback password; a 400 may echo it
        username, password = bandwidth_callback_credentials(account.account_id)
        forms |= secret_forms(password, basic_usernames=(username,))
    return forms


def provider_message(response: httpx.Response) -> str:
    """The carrier's own error text (error/message/description/detail), else the body; whole, because
    `redact` must see a secret whole before it shortens the text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "description", "detail", "errorMessage"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("description") or json.dumps(value)
            if value:
                return str(value)
    text = response.text.strip()
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def json_answer(response: httpx.Response, account: AccountCredentials) -> Any:
    """The JSON of a 2xx create answer; a 2xx we cannot read means the call may be live (Ambiguous)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Ambiguous(
            f"{account.provider} accepted the request (HTTP {response.status_code}) but its "
            f"answer is not JSON: {redact(response.text, account, limit=200)!r}",
            status=response.status_code,
        ) from exc


def fetch_record(
    client: httpx.Client, request: httpx.Request, account: AccountCredentials
) -> dict[str, Any] | None:
    """GET a call record as a JSON object; None when the carrier does not know it (404) or sends no object."""
    try:
        response = send(client, request, account, idempotent=True)
    except AuthFailed as exc:
        if exc.status == 404:
            return None
        raise
    try:
        record = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def check_destinations(destinations: Sequence[str], limit: int) -> None:
    """A request names 1..limit unique destinations (the dialer sizes chunks; this guards against a bug)."""
    if not destinations:
        raise ValueError("OutboundCall.destinations is empty")
    if len(set(destinations)) > limit:
        raise ValueError(f"{len(destinations)} destinations exceed this provider's {limit} per request")


def e164(number: str) -> str:
    """A number in E.164 with its '+'; SIP URIs as they are."""
    return number if number.startswith(("sip:", "+")) else f"+{number}"
