"""A campaign's provider options with their defaults, and the slot leases they imply (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_RING_TIMEOUT_S = 45
DEFAULT_TIME_LIMIT_S = 600  # reminders and surveys: 10 minutes is plenty; a lost hangup frees its slot sooner
LEASE_MARGIN_S = 60
# A placed call shows itself (ring, answer or hangup callback) by its ring timeout at the latest; the margin
# covers callback delivery and a carrier's retries of it. Operators on a carrier with slow callbacks raise it.
EVIDENCE_MARGIN_S = 60


def ring_timeout(options: Mapping[str, Any]) -> int:
    return int(options.get("ring_timeout", DEFAULT_RING_TIMEOUT_S))


def time_limit(options: Mapping[str, Any]) -> int:
    return int(options.get("time_limit", DEFAULT_TIME_LIMIT_S))


def dial_lease_s(options: Mapping[str, Any]) -> float:
    """How long a slot is held for a call just placed: it may ring, then talk, then a margin."""
    return float(ring_timeout(options) + time_limit(options) + LEASE_MARGIN_S)


def answered_lease_s(options: Mapping[str, Any]) -> float:
    """Renewed lease once answered: the talk time limit from now, plus a margin."""
    return float(time_limit(options) + LEASE_MARGIN_S)


MACHINE_DETECTION_ON = frozenset({"true", "yes", "on", "1"})
MACHINE_DETECTION_OFF = frozenset({"false", "no", "off", "0", "", "none"})


def machine_detection_mode(options: Mapping[str, Any]) -> str | None:
    """The campaign's machine detection as the carriers take it: "true" (detect and report), "hangup"
    (detect and hang up on a machine) or None (off). Plivo/Vobiz accept only those two words (their seeds),
    so "false" is never sent; anything else is an error naming the value."""
    value = options.get("machine_detection")
    if value is None or value is False:
        return None
    if value is True:
        return "true"
    word = str(value).strip().lower()
    if word in MACHINE_DETECTION_ON:
        return "true"
    if word == "hangup":
        return "hangup"
    if word in MACHINE_DETECTION_OFF:
        return None
    raise ValueError(f"machine_detection must be true, hangup or false, not {value!r}")


def evidence_window_s(options: Mapping[str, Any]) -> float:
    """How long after an ambiguous send (5xx, no answer) we wait for a sign of the call before treating it
    as never placed: the ring timeout plus a margin (`evidence_margin_s`, default EVIDENCE_MARGIN_S)."""
    return float(ring_timeout(options)) + float(options.get("evidence_margin_s", EVIDENCE_MARGIN_S))


def unsettled_send_ends_unknown(options: Mapping[str, Any]) -> bool:
    """A send whose evidence window closed with no sign of the call is retried by the transient policy,
    unless the campaign says `"unsettled_send": "unknown"` (end the destination unknown instead)."""
    return bool(options.get("unsettled_send", "retry") == "unknown")
