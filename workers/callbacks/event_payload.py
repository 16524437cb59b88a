"""The JSON stored for a carrier event: the raw callback as received and our parsed reading of it; and the
stored row of an answer the reaper asked the carrier for."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from campaigns.store.event_store import EventRow
from workers.providers.calls import CallbackEvent

_PARSED_FIELDS = tuple(f.name for f in fields(CallbackEvent) if f.name != "payload")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def parsed_fields(event: CallbackEvent) -> dict[str, Any]:
    """The event's normalised fields (outcome, times, durations…) as JSON values; the raw payload apart."""
    # Read the fields directly: dataclasses.asdict deep-copies, a cost paid on every callback.
    values = ((name, getattr(event, name)) for name in _PARSED_FIELDS)
    return {name: _jsonable(value) for name, value in values if value is not None}


def event_payload(event: CallbackEvent, raw: Any, source: str = "callback") -> dict[str, Any]:
    return {"raw": raw, "parsed": parsed_fields(event), "source": source}


def reconciled_event(
    provider: str,
    account_id: int,
    event: CallbackEvent,
    *,
    batch_id: UUID | None,
    request_uuid: str | None,
    call_uuid: str | None,
    destination: str | None,
) -> EventRow:
    """The carrier's answer to a status look-up as an event to store and apply like a callback, keyed
    `reconcile:` apart from the callbacks of the same call."""
    return EventRow(
        provider=provider, account_id=account_id, event_key=f"reconcile:{event.event_key}",
        kind=event.kind.value, batch_id=batch_id, request_uuid=request_uuid, call_uuid=call_uuid,
        destination=destination, payload=event_payload(event, dict(event.payload), source="reconcile"),
    )
