"""Bulk requests whose callbacks were all lost: the request ids their answer gave, kept on the batch, and the
reaper's look-up of each one, mapped back to its destination through the number in the carrier's record.

A Plivo bulk answer lists request ids with no order (`to` joined by '<' in, a list of ids out); a Vobiz one
gives one string, "each destination is delivered its own UUID via the callback URLs" (vobiz Success Response
(200 OK)). Either way only a callback ties an id to a destination, and an attempt learns its own id from its
first callback (then the reaper asks about it by that id). When every callback of a bulk destination is lost
its attempt knows no id at all. Where the provider's status API answers for a bare request id
(traits.api.request_ids_lookup; Vobiz, whose page makes request_uuid and call_uuid interchangeable), the
reaper asks once about every id the answer gave, stores each final record as an event of the batch with its
destination, and lets the applier match it by (batch, number), exactly as it matches a callback. What that
finds depends on the reading (simulator `bulk_request_uuid`): every destination when the answer is a list; the
one whose id the string is, if any ("first"); none when the string names only the request (the page's reading,
a 404). An attempt nothing settles ends `unknown` after its lease (the reaper), never redialed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg

from campaigns.store.event_store import store_event
from workers.callbacks.event_payload import reconciled_event
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials, CallbackEvent
from workers.providers.errors import ProviderError
from workers.providers.fields import check_event

log = logging.getLogger(__name__)


def batch_request_ids(conn: psycopg.Connection, batch_id: uuid.UUID) -> list[str]:
    row = conn.execute("SELECT request_uuids FROM provider_batch WHERE batch_id = %s", (batch_id,)).fetchone()
    return list(row[0]) if row else []


@dataclass
class BatchAnswer:
    """What the carrier said about a batch's request ids."""

    asked: int = 0
    final: int = 0  # final records stored as events of the batch
    live_numbers: set[str] = field(default_factory=set)  # destinations whose call goes on


def ask_carrier(
    adapter: ProviderAdapter,
    client: httpx.Client,
    creds: AccountCredentials,
    request_uuid: str | None,
    call_uuid: str | None,
    about: str,
) -> CallbackEvent | None:
    """The carrier's record of one call, checked like any input; None when it cannot tell, does not know the
    call, or sends a record we refuse (each logged, naming `about`)."""
    try:
        event = adapter.fetch_call_status(client, creds, request_uuid, call_uuid)
        if event is not None:
            check_event(event, datetime.now(UTC))  # the carrier's record is input too
    except ProviderError as exc:
        log.info("%s: %s", about, exc)
        return None
    except ValueError as exc:
        log.warning("%s: the carrier's record is refused: %s", about, exc)
        return None
    return event


def _digits(number: str | None) -> str:
    return (number or "").strip().lstrip("+")


def look_up_batch(
    conn: psycopg.Connection,
    client: httpx.Client,
    creds: AccountCredentials,
    adapter: ProviderAdapter,
    batch_id: uuid.UUID,
) -> BatchAnswer:
    """Ask about every request id of the batch; store the final ones as events of the batch (to be applied
    by the caller). Nothing is stored for an id the carrier does not know or cannot tell about."""
    answer = BatchAnswer()
    if not adapter.traits.api.request_ids_lookup:
        return answer
    for request_uuid in batch_request_ids(conn, batch_id):
        answer.asked += 1
        event = ask_carrier(adapter, client, creds, request_uuid, None,
                            f"looking up request {request_uuid} of batch {batch_id}")
        if event is None or not event.destination:
            continue
        if not event.is_final:
            answer.live_numbers.add(_digits(event.destination))
            continue
        store_event(conn, reconciled_event(
            creds.provider, creds.account_id, event, batch_id=batch_id,
            request_uuid=event.request_uuid or request_uuid, call_uuid=event.call_uuid,
            destination=event.destination,
        ))
        answer.final += 1
    conn.commit()
    return answer


def is_live(answer: BatchAnswer, number: str) -> bool:
    return _digits(number) in answer.live_numbers
