"""The JSON stored for a carrier event: the raw callback as received and our parsed reading of it."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from workers.providers.base import CallbackEvent

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
