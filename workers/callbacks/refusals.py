"""What the callback receiver does with what it refuses: bounded body reads (413 before parsing), counters
that an attacker cannot multiply, and authenticated-but-unintelligible callbacks kept raw with the reason.

Every refusal is a 4xx with a short fixed body: a 403 says "forbidden" whether the account is unknown or the
signature wrong, so probing tells nothing about which account ids exist.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from campaigns.store.event_store import CONNECTION_WAIT_S
from workers import redis_keys

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


def _storable_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").replace("\x00", "\\x00")


async def keep_rejected(request: Request, provider: str, account_id: int, kind: str, reason: str,
                        body: bytes, headers: dict[str, str]) -> None:
    """Store an authenticated callback we could not understand, raw, for an operator. Best effort: the
    carrier is told 400 either way, and nothing of it is applied."""
    try:
        async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
            await conn.execute(
                "INSERT INTO rejected_callback (provider, account_id, kind, reason, body, headers) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
                (provider, account_id, kind, reason[:500], _storable_text(body),
                 orjson.dumps({k: _storable_text(v.encode()) for k, v in headers.items()}).decode()))
    except Exception:
        log.warning("could not keep a rejected %s callback of account %s: %s", provider, account_id, reason)


async def refuse_malformed(request: Request, provider: str, account_id: int, kind: str, reason: str,
                           body: bytes, headers: dict[str, Any]) -> Response:
    """400 naming the problem; the callback kept raw and counted."""
    await keep_rejected(request, provider, account_id, kind, reason, body, headers)
    await count(request, account_id, "callbacks_malformed")
    return Response(f"bad callback: {reason}"[:300], status_code=400)
