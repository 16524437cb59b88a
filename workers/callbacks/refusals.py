"""What the callback receiver does with what it refuses: bounded body reads (413 before parsing), counters
that an attacker cannot multiply, and authenticated-but-unintelligible callbacks kept raw with the reason.

What is kept of a refused callback is bounded and holds no credential (issue 20 items 8 and 9): only the
headers an operator needs to read it (never Authorization, which for Bandwidth is the account's callback
password, nor a cookie or a signature), the first DIALER_REJECTED_CALLBACK_BODY_BYTES of the body, no URL
(its query can carry the `s` secret); and at most DIALER_REJECTED_CALLBACKS_PER_HOUR of an account's per
clock hour. Past that, only counts grow: rejected_callback_hour and dialer_rejected_callbacks_unkept_total.

Every refusal is a 4xx with a short fixed body: a 403 says "forbidden" whether the account is unknown or the
signature wrong, so probing tells nothing about which account ids exist.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from campaigns.config import get_settings
from campaigns.store.event_store import CONNECTION_WAIT_S
from workers import redis_keys
from workers.metrics.counters import REJECTED_CALLBACKS_UNKEPT
from workers.providers.registry import CALLBACK_NONCE_HEADERS

log = logging.getLogger(__name__)

FORBIDDEN = "forbidden"


class BodyTooLarge(Exception):
    """The callback body is over DIALER_MAX_CALLBACK_BYTES."""


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing (BodyTooLarge) as soon as it passes `limit`: a declared Content-Length
    over it is refused before a byte is read, a chunked one while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def count(request: Request, account_id: int | None, counter: str) -> None:
    """Add one to an account's counter, or to the shared one when no account is known (an id that is not
    an account must leave no key behind)."""
    key = redis_keys.account_stats(account_id) if account_id is not None else redis_keys.callback_stats()
    try:
        await request.app.state.redis.hincrby(key, counter, 1)
    except Exception:  # counters are for operators; never fail a callback over one
        log.debug("could not count %s", counter)


def forbidden() -> Response:
    return Response(FORBIDDEN, status_code=403)


# The headers kept with a refused callback: what says what it was and where it came from. An allow-list, so
# that no credential (Authorization, Cookie, X-Plivo-Signature-V3, X-Vobiz-Signature, …) is ever kept.
KEPT_HEADERS = frozenset({"content-type", "content-length", "user-agent", "x-forwarded-for",
                          *CALLBACK_NONCE_HEADERS})
MAX_HEADER_CHARS = 500
# Count the refusal in its account's hour, and keep the callback only while that count is within the cap: one
# statement, so concurrent refusals cannot both pass the cap's last place.
KEEP_WITHIN_CAP = """
WITH counted AS (
    INSERT INTO rejected_callback_hour AS h (account_id, hour, received)
    VALUES (%(account)s, date_trunc('hour', now(), 'UTC'), 1)
    ON CONFLICT (account_id, hour) DO UPDATE SET received = h.received + 1
    RETURNING received)
INSERT INTO rejected_callback (provider, account_id, kind, reason, body, headers)
SELECT %(provider)s, %(account)s, %(kind)s, %(reason)s, %(body)s, %(headers)s::jsonb FROM counted
WHERE counted.received <= %(cap)s
RETURNING id
"""


def _storable_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").replace("\x00", "\\x00")


def kept_body(body: bytes, limit: int) -> str:
    """The body as text, its first `limit` bytes at most, saying how much was cut."""
    if len(body) <= limit:
        return _storable_text(body)
    return _storable_text(body[:limit]) + f"…[{len(body) - limit} more bytes not kept]"


def kept_headers(headers: dict[str, str]) -> dict[str, str]:
    """The allow-listed headers (lower-case names), each bounded: never a credential."""
    return {name: _storable_text(value.encode())[:MAX_HEADER_CHARS]
            for name, value in headers.items() if name.lower() in KEPT_HEADERS}


async def keep_rejected(request: Request, provider: str, account_id: int, kind: str, reason: str,
                        body: bytes, headers: dict[str, str]) -> None:
    """Store an authenticated callback we could not understand, bounded and without credentials, for an
    operator, while its account is within the hour's cap; past it, only count it. Best effort: the carrier
    is told 400 either way, and nothing of it is applied."""
    settings = get_settings()
    row = {"provider": provider, "account": account_id, "kind": kind, "reason": reason[:500],
           "body": kept_body(body, settings.rejected_callback_body_bytes),
           "headers": orjson.dumps(kept_headers(headers)).decode(),
           "cap": settings.rejected_callbacks_per_hour}
    try:
        async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
            cur = await conn.execute(KEEP_WITHIN_CAP, row)
            kept = await cur.fetchone() is not None
    except Exception:
        log.warning("could not keep a rejected %s callback of account %s: %s", provider, account_id, reason)
        return
    if not kept:
        REJECTED_CALLBACKS_UNKEPT.labels(str(account_id)).inc()


async def refuse_malformed(request: Request, provider: str, account_id: int, kind: str, reason: str,
                           body: bytes, headers: dict[str, Any]) -> Response:
    """400 naming the problem; the callback kept raw and counted."""
    await keep_rejected(request, provider, account_id, kind, reason, body, headers)
    await count(request, account_id, "callbacks_malformed")
    return Response(f"bad callback: {reason}"[:300], status_code=400)
