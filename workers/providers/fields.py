"""The boundary every carrier value crosses: typed, bounded parsing of callback fields (no I/O).

A callback is input like any other. Values that could not be stored (a 10^30 duration in a 32-bit column, a
number orjson cannot encode, a NUL in text) or that mean nothing (a call that ended in year 1) are refused
here, naming the field, so that one event never fails its neighbours' commit or stalls the applier.
Unparseable text in an optional field stays "absent" (carriers differ in formats); a present number that is
not finite or absurdly large is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.providers.calls import CallbackEvent

NOT_YET_PREFIX = "9999-"  # VoIPbin's "has not happened" timestamp
MAX_NUMBER = 10**15  # beyond any real duration or price; bigger ones are refused before int() works on them
MAX_NUMBER_CHARS = 64
MAX_CALL_SECONDS = 7 * 86400  # durations: a week is far beyond any carrier's time limit; fits INTEGER
MAX_COST = Decimal(1_000_000)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SKEW = timedelta(days=1)  # carrier clocks and time zones set wrong (Plivo's console zone)
TEXT_LIMITS = {"event_key": 512, "request_uuid": 128, "call_uuid": 128, "destination": 256,
               "provider_status": 64, "hangup_cause": 256, "tag": 128}
JSON_INT_DIGITS = 18  # JSON integers longer than this stay strings: orjson (the event store) takes 64 bits


class FieldRefused(ValueError):
    """A callback value that cannot be taken; the message names the field (or the value) and why."""


def _number(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    text = str(value).strip()
    if len(text) > MAX_NUMBER_CHARS:
        raise FieldRefused(f"number {text[:20]!r}… is too long")
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None  # not a number at all: treated as absent
    if not number.is_finite() or abs(number) > MAX_NUMBER:
        raise FieldRefused(f"{text!r} is not a usable number")
    return number


def parse_int(value: Any) -> int | None:
    """An integer field ('12', 12, '12.0'); None when missing or not a number; FieldRefused (a ValueError)
    when not finite or absurdly large."""
    number = _number(value)
    return None if number is None else int(number)


def parse_decimal(value: Any) -> Decimal | None:
    """A money field as Decimal; None when missing or not a number; refused when not finite or huge."""
    return _number(value)


def parse_time(value: Any, zone: str | None = None) -> datetime | None:
    """A carrier timestamp as an aware UTC datetime; None when missing, empty, 'not yet' or unparseable.

    Naive values ('YYYY-MM-DD HH:MM:SS[.ffffff]') are read in `zone` (an IANA name; Plivo/Vobiz send the
    console's local time), UTC when it is None or unknown. Whether the time is plausible is
    `check_event`'s question."""
    if not isinstance(value, str) or not value.strip() or value.startswith(NOT_YET_PREFIX):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    try:
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=time_zone(zone))
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise FieldRefused(f"time {value!r} is out of range") from None


def time_zone(name: str | None) -> tzinfo:
    """The zone an account's naive callback times are in; UTC for None, empty or an unknown name."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def require_scalars(payload: Mapping[str, Any], names: tuple[str, ...]) -> Mapping[str, Any]:
    """The payload, or FieldRefused when a field the parser reads as one value is a list or an object."""
    for name in names:
        value = payload.get(name)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise FieldRefused(f"{name} is a {type(value).__name__}, not a single value")
    return payload


def as_mapping(value: Any) -> Mapping[str, Any]:
    """A nested JSON object, or an empty one when the carrier sent something else in its place."""
    return value if isinstance(value, Mapping) else {}


def _refuse_constant(name: str) -> Any:
    raise FieldRefused(f"callback body holds {name}, which is not JSON")


def _int_or_text(text: str) -> int | str:
    return int(text) if len(text.lstrip("-")) <= JSON_INT_DIGITS else text


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON callback body that must be an object; ValueError otherwise. NaN/Infinity are refused and
    integers too long for 64 bits stay text, so the raw payload can always be stored."""
    try:
        payload = json.loads(body, parse_constant=_refuse_constant, parse_int=_int_or_text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"callback body is not JSON: {exc}") from exc
    except RecursionError:
        raise FieldRefused("callback body nests too deeply") from None
    if not isinstance(payload, dict):
        raise ValueError("callback body is not a JSON object")
    return payload


def _check_text(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise FieldRefused(f"{name} is not text")
    if len(value) > TEXT_LIMITS[name]:
        raise FieldRefused(f"{name} is longer than {TEXT_LIMITS[name]} characters")
    if "\x00" in value:
        raise FieldRefused(f"{name} holds a NUL character")


def check_payload(value: Any, depth: int = 0) -> None:
    """A raw payload jsonb and orjson can store, or FieldRefused: no NUL, finite floats, 64-bit ints."""
    if depth > 32:
        raise FieldRefused("callback payload nests too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise FieldRefused("callback holds a NUL character")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FieldRefused("callback holds a number that is not finite")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 2**63:
            raise FieldRefused("callback holds an integer beyond 64 bits")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_payload(key, depth + 1)
            check_payload(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_payload(item, depth + 1)


def check_event(event: CallbackEvent, now: datetime) -> CallbackEvent:
    """The event, or FieldRefused naming the first field out of bounds."""
    for name in TEXT_LIMITS:
        _check_text(name, getattr(event, name))
    for name in ("duration", "billed_duration"):
        value = getattr(event, name)
        if value is not None and not 0 <= value <= MAX_CALL_SECONDS:
            raise FieldRefused(f"{name} {value} is outside 0..{MAX_CALL_SECONDS} seconds")
    if event.cost is not None and not (event.cost.is_finite() and abs(event.cost) <= MAX_COST):
        raise FieldRefused(f"cost {event.cost} is outside ±{MAX_COST}")
    for name in ("ring_at", "answer_at", "end_at"):
        value = getattr(event, name)
        if value is not None and not EARLIEST <= value <= now + FUTURE_SKEW:
            raise FieldRefused(f"{name} {value.isoformat()} is not a plausible time")
    check_payload(event.payload)
    return event


