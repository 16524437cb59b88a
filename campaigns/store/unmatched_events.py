"""What is kept of a callback whose event matches no call (issue 20 item 9): whoever holds an account's
callback credentials can post made-up call ids, and each such event was stored whole (up to the 64 KiB body
cap, for ever). An unmatched event keeps its parsed reading whole (ids, outcome, times: bounded by the
receiver's checks, and all the applier needs if its call's ids are recorded later) and its raw fields only
while they fit DIALER_UNMATCHED_EVENT_RAW_BYTES, saying what was cut."""

from __future__ import annotations

from typing import Any

import orjson


def _size(value: Any) -> int:
    return len(orjson.dumps(value, default=str))


def bounded_payload(payload: dict[str, Any], limit: int) -> dict[str, Any]:
    """`payload` ({"raw", "parsed", "source"}) with its raw part cut to about `limit` bytes of JSON: the
    fields that fit, in order, are kept (a large one is skipped, the small ones after it still kept), and
    `raw_cut` says how large the raw part was. A payload within the limit is returned as it is."""
    raw = payload.get("raw")
    size = _size(raw)
    if size <= limit:
        return payload
    kept: dict[str, Any] = {}
    used = 2  # the braces
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        piece = _size({key: value})  # the pair with its braces: about a comma more than it adds
        if used + piece - 1 <= limit:
            kept[key] = value
            used += piece - 1
    return {**payload, "raw": kept, "raw_cut": {"bytes": size, "kept_fields": len(kept)}}
