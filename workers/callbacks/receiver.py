"""The callback endpoints: /callbacks/{provider}/{account_id}/{kind}, any method a carrier uses.

account (403 if unknown: no query of its own) and ticket (every call's URL carries one; only a per-account
webhook, VoIPbin's, comes without) -> size (413 over DIALER_MAX_CALLBACK_BYTES) -> verify (403 and counted
if forged, unsigned or replayed; the nonce claimed is the one the signature covers, per account and
signature version, kept until the ticket expires) -> parse and bound every field (400 naming it, kept raw
in rejected_callback; a signed webhook older than the grace is a replay, 403) -> store durably (503 if
Postgres cannot take it, so the carrier retries) -> 2xx with the provider's expected body.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from datetime import UTC, datetime
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
from campaigns.store.event_store import CONNECTION_WAIT_S, EventRow, StoreUnavailable, Unstorable
from workers.callbacks import tickets
from workers.callbacks.answer_documents import answer_document
from workers.callbacks.event_payload import event_payload
from workers.callbacks.machine_hangup import acknowledge_machine
from workers.callbacks.nonces import NONCE_TTL_S, well_formed_nonce
from workers.callbacks.opt_out import KEYPRESS_KIND, offer_opt_out, receive_keypress
from workers.callbacks.refusals import BodyTooLarge, count, forbidden, read_capped, refuse_malformed
from workers.callbacks.webhook_window import stale
from workers.providers.base import ProviderAdapter
from workers.providers.calls import (
    AccountCredentials,
    Authenticated,
    CallbackEvent,
    EventKind,
    IncomingCallback,
)
from workers.providers.console_setup import PER_ACCOUNT_WEBHOOK
from workers.providers.fields import check_event, check_payload
from workers.providers.registry import CALLBACK_NONCE_HEADERS, adapter_for
from workers.providers.signatures import callback_url_secret

log = logging.getLogger(__name__)
router = APIRouter()

ACCOUNT_CACHE_TTL_S = 30.0
# An id missing from the cache waits for the next reload, and misses share one reload at most this often: a
# flood of made-up account ids costs one query a second, and an account created before its callback arrived
# is always found (the reload starts after the callback did).
ACCOUNT_MISS_RELOAD_S = 1.0
KEPT_HEADERS = ("content-type", "user-agent", *CALLBACK_NONCE_HEADERS, "x-forwarded-for")
FORM = "application/x-www-form-urlencoded"
NONCE_MARGIN_S = 60


class AccountCache:
    """Every account by id, read in one query and refreshed every ACCOUNT_CACHE_TTL_S; an unknown id costs
    no query of its own (see ACCOUNT_MISS_RELOAD_S)."""

    def __init__(self) -> None:
        self.accounts: dict[int, AccountCredentials] = {}
        self.unreadable: dict[int, SecretUnreadable] = {}
        self.loaded_at = -math.inf
        self.lock = asyncio.Lock()

    async def get(self, request: Request, account_id: int) -> AccountCredentials | None:
        """The account, None when there is none, SecretUnreadable when its token cannot be decrypted."""
        arrived = time.monotonic()
        if arrived - self.loaded_at >= ACCOUNT_CACHE_TTL_S:
            await self._reload(request, before=arrived)
        account = self._known(account_id)
        if account is not None:
            return account
        wait = self.loaded_at + ACCOUNT_MISS_RELOAD_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._reload(request, before=arrived)
        return self._known(account_id)

    def _known(self, account_id: int) -> AccountCredentials | None:
        if account_id in self.unreadable:
            raise self.unreadable[account_id]
        return self.accounts.get(account_id)

    async def _reload(self, request: Request, before: float) -> None:
        """Reload unless a read that started after `before` (so saw every account committed by then) did."""
        async with self.lock:  # one reload for all the requests that found it stale
            if self.loaded_at < before:
                await self._load(request)

    async def _load(self, request: Request) -> None:
        started = time.monotonic()
        async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM provider_account")
            rows = await cur.fetchall()
        accounts: dict[int, AccountCredentials] = {}
        unreadable: dict[int, SecretUnreadable] = {}
        for row in rows:
            try:
                accounts[row["id"]] = account_from_row(row)[0]
            except SecretUnreadable as exc:  # that account's callbacks get 500; the others' are served
                unreadable[row["id"]] = exc
        self.accounts, self.unreadable = accounts, unreadable
        self.loaded_at = started


def _batch_id(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def _forget_nonce(request: Request, key: str | None) -> None:
    if key:
        try:
            await request.app.state.nonces.forget(key)
        except Exception:  # the carrier's retry will be refused as a replay; it was not stored: log it
            log.error("could not forget nonce %s of an unstored callback", key)


def _nonce_ttl(ticket: tickets.Ticket | None, now: float) -> int:
    """A signature can be presented again as long as its URL's ticket is valid, so its nonce is remembered
    that long, whatever the signature covers: a Plivo V3 body replayed after a short memory was an opt-out
    keypress listing a number again (workers.callbacks.opt_out). Past the expiry the ticket refuses it."""
    if ticket is None:
        return NONCE_TTL_S
    return max(NONCE_TTL_S, int(ticket.expires - now) + NONCE_MARGIN_S)


def _ticket_optional(provider: str, kind: str) -> bool:
    """Only the per-account webhook (VoIPbin's, set once in its console) has no ticket: every URL we hand
    out with a call carries one (workers.callbacks.urls)."""
    return provider in PER_ACCOUNT_WEBHOOK and kind == EventKind.STATUS


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


async def _admit(request: Request, provider: str, account_id: int, kind: str, segment: str | None,
                 now: float) -> tuple[AccountCredentials, tickets.Ticket | None] | Response:
    """The account and the URL's ticket, or the refusal (the same 403 for an unknown account and a bad
    ticket)."""
    lookup = await _look_up_account(request, account_id)
    if isinstance(lookup, Response):
        return lookup
    account = lookup
    if account is None or account.provider != provider:
        await count(request, None if account is None else account_id, "callbacks_forged")
        return forbidden()
    ticket = None
    if segment is not None:
        ticket = tickets.read(provider, account_id, kind, segment, now)
    if ticket is None and (segment is not None or not _ticket_optional(provider, kind)):
        await count(request, account_id, "callbacks_forged")
        return forbidden()
    return account, ticket


async def _claim_nonce(request: Request, provider: str, account_id: int, auth: Authenticated,
                       ttl_s: int) -> str | None | Response:
    """Claim the verified signature's nonce for this account and signature version: its Redis key, None
    when the scheme has no nonce, or the refusal (403 replay, 503 when Redis cannot tell)."""
    if auth.nonce is None:
        return None
    try:
        claimed: tuple[bool, str] = await request.app.state.nonces.claim(
            provider, account_id, auth.scheme, auth.nonce, ttl_s)
    except Exception:  # cannot tell a replay without Redis: have the carrier try again
        return Response("replay check unavailable, retry", status_code=503)
    first_time, key = claimed
    if not first_time:
        await count(request, account_id, "callbacks_replayed")
        return forbidden()
    return key


async def _parse(request: Request, adapter: ProviderAdapter, incoming: IncomingCallback,
                 kind: str) -> tuple[CallbackEvent, Any] | Response:
    """The event and the raw fields kept with it, or the 400 (kept in rejected_callback) for one that
    cannot be understood."""
    provider, account_id = adapter.traits.kind, request.path_params["account_id"]
    try:
        event = check_event(adapter.parse_callback(incoming), datetime.now(UTC))
        raw: Any = incoming.params or dict(event.payload)  # the adapter already decoded a JSON body
        check_payload(raw)
        return event, raw
    except ValueError as exc:  # the nonce stays claimed: the same body cannot get better on a retry
        reason = str(exc)
    except Exception as exc:  # a parser bug must not become a 500 the carrier retries for ever
        log.exception("%s callback parser failed", provider)
        reason = f"unreadable ({type(exc).__name__})"
    return await refuse_malformed(request, provider, account_id, kind, reason, incoming.body,
                                  dict(incoming.headers))


def _public_url(request: Request) -> str:
    """The URL the carrier called (and signed): DIALER_PUBLIC_URL, our path, the query as sent."""
    query = request.url.query
    return f"{get_settings().public_url}{request.url.path}" + (f"?{query}" if query else "")


def _authenticate(request: Request, adapter: ProviderAdapter, account: AccountCredentials,
                  incoming: IncomingCallback, ticket: tickets.Ticket | None) -> Authenticated | None:
    """What verified the callback, or None when nothing did or what did cannot be trusted here."""
    # A valid ticket is the URL secret's proof; the signing carriers still need their own signature.
    url_secret = callback_url_secret(account.account_id) if ticket else request.query_params.get("s")
    auth = adapter.authenticate(account, incoming, url_secret)
    if auth is None:
        return None
    # A signature that leaves the query out (Vobiz, V2) vouches for nothing there: only a ticket will do.
    if ticket is None and not auth.covers_request:
        return None
    # A nonce is one token: one holding a separator could be the tail of another version's string.
    if auth.nonce is not None and not well_formed_nonce(auth.nonce):
        return None
    return auth


def _stale_webhook(account: AccountCredentials, ticket: tickets.Ticket | None, event: CallbackEvent) -> bool:
    """A signed per-account webhook (no ticket to expire) whose times are past the window: a replay
    (workers.callbacks.webhook_window). An unsigned one proves nothing by its times."""
    if ticket is not None or not account.webhook_secret:
        return False
    return stale(event, datetime.now(UTC), get_settings().callback_grace_s)


async def receive_callback(request: Request) -> Response:
    """One carrier callback: verify, parse, store durably, then acknowledge."""
    path = request.path_params
    provider, account_id, kind = path["provider"], path["account_id"], path["kind"]
    try:
        kind_hint = EventKind.STATUS if kind == KEYPRESS_KIND else EventKind(kind)
        adapter = adapter_for(provider)
    except (ValueError, KeyError):
        return Response(status_code=404)
    now = time.time()
    admitted = await _admit(request, provider, account_id, kind, path.get("ticket"), now)
    if isinstance(admitted, Response):
        return admitted
    account, ticket = admitted
    try:
        body = await read_capped(request, get_settings().max_callback_bytes)
    except BodyTooLarge:
        await count(request, account_id, "callbacks_oversized")
        return Response("callback body too large", status_code=413)
    except ClientDisconnect:  # the carrier gave up waiting; it retries, and nothing was stored
        return Response(status_code=499)
    headers = {k.lower(): v for k, v in request.headers.items()}
    params = _callback_params(request, headers, body)
    incoming = IncomingCallback(method=request.method, url=_public_url(request), headers=headers, body=body,
                                params=params,
                                kind_hint=kind_hint, time_zone=account.time_zone)
    auth = _authenticate(request, adapter, account, incoming, ticket)
    if auth is None:
        await count(request, account_id, "callbacks_forged")
        return forbidden()
    nonce_key = await _claim_nonce(request, provider, account_id, auth, _nonce_ttl(ticket, now))
    if isinstance(nonce_key, Response):
        return nonce_key
    if kind == KEYPRESS_KIND:  # the opt-out keypress: authenticated above like every callback
        answer = await receive_keypress(request, adapter, account, incoming, ticket)
        if answer.status_code >= 400:
            await _forget_nonce(request, nonce_key)
        return answer
    parsed = await _parse(request, adapter, incoming, kind)
    if isinstance(parsed, Response):
        return parsed
    event, raw = parsed
    if _stale_webhook(account, ticket, event):
        await count(request, account_id, "callbacks_replayed")
        return forbidden()
    batch_id = ticket.batch_id if ticket else _batch_id(request.query_params.get("b") or event.tag)
    row = EventRow(
        provider=provider, account_id=account_id, event_key=event.event_key, kind=event.kind.value,
        batch_id=batch_id, request_uuid=event.request_uuid,
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
        return await refuse_malformed(request, provider, account_id, kind, str(exc), body, headers)
    if kind_hint == EventKind.MACHINE:  # asynchronous detection (Bandwidth): a "hangup" campaign ends it
        return await acknowledge_machine(request, adapter, account, event, row.batch_id)
    return await _acknowledge(request, adapter, kind_hint, account_id, row.batch_id, row.destination)


def _callback_params(request: Request, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """Form or query parameters (our own `s` and `b` apart); empty for a JSON body."""
    if request.method == "POST" and headers.get("content-type", "").startswith(FORM):
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if request.method == "GET":
        return {k: v for k, v in request.query_params.items() if k not in ("s", "b")}
    return {}


async def _acknowledge(request: Request, adapter: ProviderAdapter, kind_hint: EventKind, account_id: int,
                       batch_id: uuid.UUID | None, destination: str | None = None) -> Response:
    """The 2xx each carrier expects: call-control XML for an answer, else the adapter's ack status."""
    if kind_hint == EventKind.ANSWER:
        script = await request.app.state.scripts.get(request, account_id, batch_id)
        media_type, document = answer_document(
            adapter.traits.kind, message=script.text_for(destination), redirect_url=script.answer_url,
            voice=script.options.get("voice"), language=script.options.get("language"),
            audio_url=script.options.get("audio_url"))
        if script.answer_url is None:
            document = await offer_opt_out(request, adapter, account_id, batch_id, document)
        return Response(document, media_type=media_type)
    return Response(status_code=adapter.traits.callbacks.ack_status)


# A plain Starlette route: FastAPI's parameter injection costs more per callback than the whole check.
router.add_route("/callbacks/{provider}/{account_id:int}/{kind}", receive_callback, methods=["GET", "POST"])
router.add_route("/callbacks/{provider}/{account_id:int}/{kind}/{ticket}", receive_callback,
                 methods=["GET", "POST"])
