"""The callback endpoints: /callbacks/{provider}/{account_id}/{kind}, any method a carrier uses.

verify (403 and counted if forged, unsigned or replayed) -> parse (400 naming the field) -> store durably
(503 if Postgres cannot take it, so the carrier retries) -> 2xx with the provider's expected body.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from fastapi import APIRouter, Request, Response
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from starlette.requests import ClientDisconnect

from campaigns.accounts import account_from_row
from campaigns.config import get_settings
from campaigns.secrets_box import SecretUnreadable
from workers import redis_keys
from workers.callbacks.answer_documents import answer_document
from workers.callbacks.event_payload import event_payload
from workers.callbacks.event_store import CONNECTION_WAIT_S, EventRow, StoreUnavailable, Unstorable
from workers.callbacks.nonces import NonceClaims
from workers.providers.base import AccountCredentials, EventKind, IncomingCallback, ProviderAdapter
from workers.providers.registry import CALLBACK_NONCE_HEADERS, adapter_for

log = logging.getLogger(__name__)
router = APIRouter()

ACCOUNT_CACHE_TTL_S = 30.0
KEPT_HEADERS = ("content-type", "user-agent", *CALLBACK_NONCE_HEADERS, "x-forwarded-for")
FORM = "application/x-www-form-urlencoded"


class AccountCache:
    """Accounts by id for the receiver, refreshed every ACCOUNT_CACHE_TTL_S."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[float, AccountCredentials | None]] = {}

    async def get(self, request: Request, account_id: int) -> AccountCredentials | None:
        hit = self.entries.get(account_id)
        if hit and time.monotonic() - hit[0] < ACCOUNT_CACHE_TTL_S:
            return hit[1]
        async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM provider_account WHERE id = %s", (account_id,))
            row = await cur.fetchone()
        creds = account_from_row(row)[0] if row else None
        self.entries[account_id] = (time.monotonic(), creds)
        return creds


async def _look_up_account(request: Request, account_id: int) -> AccountCredentials | Response | None:
    """The callback's account, or the 5xx that makes the carrier retry when we cannot tell (store down,
    or a token we cannot decrypt: that one is logged as an error, since retries alone never fix it)."""
    accounts: AccountCache = request.app.state.accounts
    try:
        return await accounts.get(request, account_id)
    except (psycopg.OperationalError, PoolTimeout):
        log.warning("callback for account %s: store unavailable, the carrier will retry", account_id)
        return Response("store unavailable", status_code=503)
    except SecretUnreadable as exc:
        log.error("callback for account %s cannot be checked: %s", account_id, exc)
        return Response("account credentials unreadable on our side; retry later", status_code=500)
    except Exception:
        log.exception("callback for account %s: account lookup failed", account_id)
        return Response("account lookup failed, retry", status_code=503)


def _batch_id(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def _count(request: Request, account_id: int, counter: str) -> None:
    try:
        await request.app.state.redis.hincrby(redis_keys.account_stats(account_id), counter, 1)
    except Exception:  # counters are for operators; never fail a callback over one
        log.debug("could not count %s", counter)


async def _claim_nonce(request: Request, provider: str, headers: dict[str, str]) -> tuple[bool, str | None]:
    """Remember a signed callback's nonce in one atomic step: (True, key) the first time, (False, key) for a
    replay. If the event then cannot be stored, the caller forgets the nonce so the carrier's retry passes."""
    nonce = next((headers[h] for h in CALLBACK_NONCE_HEADERS if headers.get(h)), None)
    if nonce is None:
        return True, None
    nonces: NonceClaims = request.app.state.nonces
    return await nonces.claim(provider, nonce)


async def _forget_nonce(request: Request, key: str | None) -> None:
    if key:
        try:
            await request.app.state.nonces.forget(key)
        except Exception:  # the carrier's retry will be refused as a replay; it was not stored: log it
            log.error("could not forget nonce %s of an unstored callback", key)


async def receive_callback(request: Request) -> Response:
    """One carrier callback: verify, parse, store durably, then acknowledge."""
    path = request.path_params
    provider, account_id, kind = path["provider"], path["account_id"], path["kind"]
    try:
        kind_hint = EventKind(kind)
        adapter = adapter_for(provider)
    except (ValueError, KeyError):
        return Response(status_code=404)
    lookup = await _look_up_account(request, account_id)
    if isinstance(lookup, Response):
        return lookup
    account = lookup
    if account is None or account.provider != provider:
        await _count(request, account_id, "callbacks_forged")
        return Response("unknown account", status_code=403)
    try:
        body = await request.body()
    except ClientDisconnect:  # the carrier gave up waiting; it retries, and nothing was stored
        return Response(status_code=499)
    headers = {k.lower(): v for k, v in request.headers.items()}
    params = _callback_params(request, headers, body)
    query = request.url.query
    url = f"{get_settings().public_url}{request.url.path}" + (f"?{query}" if query else "")
    incoming = IncomingCallback(method=request.method, url=url, headers=headers, body=body, params=params,
                                kind_hint=kind_hint, time_zone=account.time_zone)
    if not adapter.verify_callback(account, incoming, request.query_params.get("s")):
        await _count(request, account_id, "callbacks_forged")
        return Response("signature invalid", status_code=403)
    try:
        first_time, nonce_key = await _claim_nonce(request, provider, headers)
    except Exception:  # cannot tell a replay without Redis: have the carrier try again
        return Response("replay check unavailable, retry", status_code=503)
    if not first_time:
        await _count(request, account_id, "callbacks_replayed")
        return Response("replayed", status_code=403)
    try:
        event = adapter.parse_callback(incoming)
    except ValueError as exc:
        await _forget_nonce(request, nonce_key)
        await _count(request, account_id, "callbacks_malformed")
        return Response(f"bad callback: {exc}", status_code=400)
    raw: Any = params or dict(event.payload)  # the adapter already decoded a JSON body
    row = EventRow(
        provider=provider, account_id=account_id, event_key=event.event_key, kind=event.kind.value,
        batch_id=_batch_id(request.query_params.get("b") or event.tag), request_uuid=event.request_uuid,
        call_uuid=event.call_uuid, destination=event.destination,
        payload=event_payload(event, raw),
        headers={h: headers[h] for h in KEPT_HEADERS if h in headers},
    )
    try:
        await request.app.state.writer.store(row)
    except StoreUnavailable:
        await _forget_nonce(request, nonce_key)
        return Response("store unavailable, retry", status_code=503)
    except Unstorable as exc:
        await _forget_nonce(request, nonce_key)
        await _count(request, account_id, "callbacks_malformed")
        return Response(f"bad callback: {exc}", status_code=400)
    return await _acknowledge(request, adapter, kind_hint, row.batch_id, row.destination)


def _callback_params(request: Request, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """Form or query parameters (our own `s` and `b` apart); empty for a JSON body."""
    if request.method == "POST" and headers.get("content-type", "").startswith(FORM):
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if request.method == "GET":
        return {k: v for k, v in request.query_params.items() if k not in ("s", "b")}
    return {}


async def _acknowledge(request: Request, adapter: ProviderAdapter, kind_hint: EventKind,
                       batch_id: uuid.UUID | None, destination: str | None = None) -> Response:
    """The 2xx each carrier expects: call-control XML for an answer, else the adapter's ack status."""
    if kind_hint == EventKind.ANSWER:
        script = await request.app.state.scripts.get(request, batch_id)
        media_type, document = answer_document(
            adapter.kind, message=script.text_for(destination), redirect_url=script.answer_url,
            voice=script.options.get("voice"), language=script.options.get("language"),
            audio_url=script.options.get("audio_url"))
        return Response(document, media_type=media_type)
    return Response(status_code=adapter.callback_ack_status)


# A plain Starlette route: FastAPI's parameter injection costs more per callback than the whole check.
router.add_route("/callbacks/{provider}/{account_id:int}/{kind}", receive_callback, methods=["GET", "POST"])
