"""The opt-out keypress: a message campaign with `provider_options.opt_out_digit` (e.g. "9") offers "to stop
these calls, press 9" inside its answer document, in the provider's digit-gathering markup
(workers.providers.keypress). The carrier posts the digits to /callbacks/{provider}/{account}/keypress,
which the receiver authenticates exactly like every other callback (signature or Basic credentials, URL
secret, replay check) before handing it here. A matching key marks the attempt opted out and adds the
call's number to the account's do-not-call list, in one transaction; only then is it answered 2xx, so a
store outage (503) makes the carrier retry rather than lose an opt-out. An attempt opts out at most once:
the mark (`call_attempt.opted_out_at`) is set only where it is not yet, and the number is listed only by
the press that set it, so a second keypress for the same attempt (re-sent by the carrier, or replayed once
its nonce is gone: the mark is in Postgres, not Redis) never lists again a number an operator removed.

A campaign that redirects answered calls to its own answer URL runs its own IVR: the offer is not added.
"""

from __future__ import annotations

import logging
import time
import uuid
from xml.sax.saxutils import escape

import psycopg
from fastapi import Request, Response
from psycopg_pool import PoolTimeout

from campaigns.config import get_settings
from campaigns.dnc import is_opt_out_digit
from campaigns.store.attempt_marks import record_opt_out
from campaigns.store.event_store import CONNECTION_WAIT_S
from workers.callbacks.tickets import Ticket
from workers.callbacks.urls import callback_url
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials, IncomingCallback

log = logging.getLogger(__name__)

KEYPRESS_KIND = "keypress"  # the callback URL's kind segment
PROMPT = "To stop receiving these calls, press {digit}."
CONFIRMATION = "You will not receive these calls again. Goodbye."
_CACHE_SIZE = 20000

_FIND_ATTEMPT = """
SELECT a.id, d.number, c.provider_options->>'opt_out_digit'
FROM call_attempt a JOIN destination d ON d.id = a.destination_id JOIN campaign c ON c.id = a.campaign_id
WHERE a.account_id = %(account)s AND (
    (a.batch_id = %(batch)s AND d.number IN (%(to)s, '+' || %(to)s))
    OR a.call_uuid = %(call)s OR a.request_uuid = %(request)s)
ORDER BY a.id DESC LIMIT 1
"""
_LIST_NUMBER = """
INSERT INTO account_dnc_number (account_id, number, reason, source)
VALUES (%s, %s, 'opted out by keypress on attempt ' || %s::text, 'keypress') ON CONFLICT DO NOTHING
"""


def valid_opt_out_digit(value: object) -> str | None:
    """The campaign's opt-out key if it is one key of a phone pad, else None (no offer)."""
    return value if is_opt_out_digit(value) else None


def with_opt_out(
    adapter: ProviderAdapter,
    document: str,
    *,
    digit: str,
    action_url: str,
    credentials: tuple[str | None, str | None],
) -> str:
    """The answer document with its verbs, then the prompt, inside the dialect's gather element. Unchanged
    where the provider cannot gather digits."""
    dialect = adapter.traits.answer.keypress
    head, sep, rest = document.partition("<Response>")
    inner, end, tail = rest.rpartition("</Response>")
    if dialect is None or not sep or not end:
        return document
    speak = adapter.traits.answer.speak_verb
    prompt = f"<{speak}>{escape(PROMPT.format(digit=digit))}</{speak}>"
    gathered = dialect.gather(inner + prompt, action_url=action_url, digit=digit, credentials=credentials)
    return f"{head}<Response>{gathered}</Response>{tail}"


class OptOutOffers:
    """The opt-out key of each batch's campaign, looked up once per batch (like the call scripts)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, uuid.UUID], str | None] = {}

    async def digit(self, request: Request, account_id: int, batch_id: uuid.UUID | None) -> str | None:
        """The key offered by the batch's campaign, looked up only among the authenticated account's calls."""
        if batch_id is None:
            return None
        if (account_id, batch_id) in self.entries:
            return self.entries[(account_id, batch_id)]
        try:
            async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn:
                cur = await conn.execute(
                    "SELECT c.provider_options->>'opt_out_digit' FROM call_attempt a "
                    "JOIN campaign c ON c.id = a.campaign_id "
                    "WHERE a.batch_id = %s AND a.account_id = %s LIMIT 1",
                    (batch_id, account_id),
                )
                row = await cur.fetchone()
        except Exception:  # the answer still plays its message; only the offer is missing
            log.warning("could not look up the opt-out offer of batch %s", batch_id)
            return None
        digit = valid_opt_out_digit(row[0]) if row else None
        if len(self.entries) >= _CACHE_SIZE:
            self.entries.clear()
        self.entries[(account_id, batch_id)] = digit
        return digit


async def offer_opt_out(
    request: Request, adapter: ProviderAdapter, account_id: int, batch_id: uuid.UUID | None, document: str
) -> str:
    """`document` with the opt-out offer when the batch's campaign asks for one and the provider can."""
    if adapter.traits.answer.keypress is None:
        return document
    offers: OptOutOffers | None = getattr(request.app.state, "opt_out_offers", None)
    if offers is None:
        offers = request.app.state.opt_out_offers = OptOutOffers()
    digit = await offers.digit(request, account_id, batch_id)
    if digit is None:
        return document
    # A ticket in the signed path, like the call's own URLs (Vobiz signs only the path); the call is live, so
    # its key comes within the grace.
    expires = int(time.time() + get_settings().callback_grace_s)
    action_url = callback_url(
        adapter.traits.kind, account_id, KEYPRESS_KIND, str(batch_id) if batch_id else None, expires
    )
    credentials = adapter.callback_credentials(account_id)
    return with_opt_out(adapter, document, digit=digit, action_url=action_url, credentials=credentials)


def _goodbye(adapter: ProviderAdapter, opted_out: bool) -> Response:
    speak = adapter.traits.answer.speak_verb
    words = f"<{speak}>{escape(CONFIRMATION)}</{speak}>" if opted_out else ""
    return Response(
        f'<?xml version="1.0"?><Response>{words}<Hangup/></Response>', media_type="application/xml"
    )


async def receive_keypress(
    request: Request,
    adapter: ProviderAdapter,
    account: AccountCredentials,
    incoming: IncomingCallback,
    ticket: Ticket | None = None,
) -> Response:
    """An authenticated keypress callback: opt the number out if the campaign's key was pressed and this
    attempt has not opted out already. The batch is the ticket's (the query's on an older URL)."""
    dialect = adapter.traits.answer.keypress
    if dialect is None:
        return Response("this provider has no keypress callback", status_code=404)
    try:
        press = dialect.parse(incoming)
    except ValueError as exc:
        return Response(f"bad keypress callback: {exc}", status_code=400)
    batch = request.query_params.get("b")
    try:
        batch_id = ticket.batch_id if ticket else (uuid.UUID(batch) if batch else None)
    except ValueError:
        batch_id = None
    to = (press.to or "").lstrip("+") or None
    params = {
        "account": account.account_id,
        "batch": batch_id,
        "to": to,
        "call": press.call_uuid,
        "request": press.request_uuid,
    }
    try:
        async with request.app.state.pool.connection(timeout=CONNECTION_WAIT_S) as conn, conn.transaction():
            cur = await conn.execute(_FIND_ATTEMPT, params)
            row = await cur.fetchone()
            if row is None:
                log.warning(
                    "keypress for account %s matches no attempt (batch %s)", account.account_id, batch
                )
                return _goodbye(adapter, False)
            attempt_id, number, digit = row
            digit = valid_opt_out_digit(digit)
            if digit is None or digit not in press.digits:
                return _goodbye(adapter, False)
            if await record_opt_out(conn, attempt_id=attempt_id, digits=press.digits):
                await conn.execute(_LIST_NUMBER, (account.account_id, number, attempt_id))
                log.info("number of attempt %s opted out by keypress", attempt_id)
            else:  # this attempt opted out before: the number is not listed again
                log.info("attempt %s already opted out; keypress not applied again", attempt_id)
    except (psycopg.OperationalError, PoolTimeout):
        return Response("store unavailable, retry", status_code=503)
    return _goodbye(adapter, True)
