"""Pure normalisation of carrier callback values: outcome tables per provider (PROVIDERS.md) and the
small coercions (times, integers, money, event keys) every callback parser shares. No I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.states import Outcome


@dataclass(frozen=True)
class Normalised:
    """A final event's outcome; `throttled` means a carrier-side limit ended it (retry, not an attempt)."""

    outcome: Outcome
    throttled: bool = False


# --- Plivo / Vobiz ---------------------------------------------------------------------------------
PLIVO_CAUSE_OUTCOMES: dict[int, Outcome] = {
    1000: Outcome.CANCELLED,
    3000: Outcome.NO_ANSWER,
    6010: Outcome.NO_ANSWER,
    3010: Outcome.BUSY,
    2030: Outcome.REJECTED,  # country barred
    2040: Outcome.REJECTED,  # number barred
}
PLIVO_FAILED_CAUSES = range(2000, 2061)  # invalid destination .. loop, except the barred ones above
PLIVO_THROTTLED_CAUSES = frozenset({1020})  # simultaneous dial limit
PLIVO_STATUS_OUTCOMES: dict[str, Outcome] = {
    "busy": Outcome.BUSY,
    "no-answer": Outcome.NO_ANSWER,
    "timeout": Outcome.NO_ANSWER,
    "failed": Outcome.FAILED,
    "cancel": Outcome.CANCELLED,
    "canceled": Outcome.CANCELLED,
    "cancelled": Outcome.CANCELLED,
}
PLIVO_MACHINE_VALUES = frozenset({"true", "machine_detection"})


def plivo_outcome(
    status: str | None,
    cause_code: int | None,
    duration: int | None,
    answer_time: str | None,
    machine: str | None,
) -> Normalised:
    """Plivo/Vobiz hangup: Machine first, then HangupCauseCode, then CallStatus.

    Both seeds (plivo-make-call.txt l.94-98, vobiz-make-call.txt l.103-107) give the hangup_url only
    `CallStatus` "completed" (always), `AnswerTime` and no HangupCause/Duration. So a "completed" hangup
    is answered when it carries an answer time (or a positive Duration, where a richer shape sends one)
    and otherwise *not answered* (no_answer, which the retry policy can retry); the finer causes are used
    only when present."""
    if (machine or "").strip().lower() in PLIVO_MACHINE_VALUES:
        return Normalised(Outcome.MACHINE)
    if cause_code in PLIVO_THROTTLED_CAUSES:
        return Normalised(Outcome.FAILED, throttled=True)
    if cause_code in PLIVO_CAUSE_OUTCOMES:
        return Normalised(PLIVO_CAUSE_OUTCOMES[cause_code])
    if cause_code is not None and cause_code in PLIVO_FAILED_CAUSES:
        return Normalised(Outcome.FAILED)
    status = (status or "").strip().lower()
    if status == "completed":
        answered = (duration or 0) > 0 or bool((answer_time or "").strip())
        return Normalised(Outcome.ANSWERED if answered else Outcome.NO_ANSWER)
    return Normalised(PLIVO_STATUS_OUTCOMES.get(status, Outcome.UNKNOWN))


# --- TryVox ----------------------------------------------------------------------------------------
# The seed (tryvox-make-call.txt l.43, l.50) names the statuses (ringing, in-progress, completed, failed,
# "etc.") and says the hangup carries "duration, end reason": not their values. "completed" therefore
# means answered only with evidence of an answer (answer_time, or duration > 0); a completed hangup
# that shows duration 0 and no answer time was not answered. With no duration field at all the status is
# all we have, and "completed" is taken as the call having been connected and finished.
TRYVOX_STATUS_OUTCOMES: dict[str, Outcome] = {
    "completed": Outcome.ANSWERED,
    "busy": Outcome.BUSY,
    "no-answer": Outcome.NO_ANSWER,
    "failed": Outcome.FAILED,
    "canceled": Outcome.CANCELLED,
    "cancelled": Outcome.CANCELLED,
}
TRYVOX_FINAL_STATUSES = frozenset(TRYVOX_STATUS_OUTCOMES)
# end_reason values (unpublished; PROVIDERS.md lists caller-hangup, callee-hangup …) that say more than
# the status does.
TRYVOX_END_REASON_OUTCOMES: dict[str, Outcome] = {
    "busy": Outcome.BUSY,
    "no-answer": Outcome.NO_ANSWER,
    "no_answer": Outcome.NO_ANSWER,
    "timeout": Outcome.NO_ANSWER,
    "rejected": Outcome.REJECTED,
    "failed": Outcome.FAILED,
    "canceled": Outcome.CANCELLED,
    "cancelled": Outcome.CANCELLED,
}


def tryvox_outcome(
    status: str | None,
    *,
    duration: int | None = None,
    answer_time: str | None = None,
    end_reason: str | None = None,
) -> Normalised:
    """TryVox final `status`, checked against the answer evidence; default unknown."""
    status = (status or "").strip().lower()
    if status != "completed":
        return Normalised(TRYVOX_STATUS_OUTCOMES.get(status, Outcome.UNKNOWN))
    if (answer_time or "").strip() or (duration or 0) > 0:
        return Normalised(Outcome.ANSWERED)
    reason = (end_reason or "").strip().lower()
    if reason in TRYVOX_END_REASON_OUTCOMES:
        return Normalised(TRYVOX_END_REASON_OUTCOMES[reason])
    if duration is not None:  # the carrier says it lasted 0 s and never answered
        return Normalised(Outcome.NO_ANSWER)
    return Normalised(Outcome.ANSWERED)


# --- VoIPbin ---------------------------------------------------------------------------------------
VOIPBIN_REASON_OUTCOMES: dict[str, Outcome] = {
    "normal": Outcome.ANSWERED,
    "busy": Outcome.BUSY,
    "noanswer": Outcome.NO_ANSWER,
    "dialout": Outcome.NO_ANSWER,
    "failed": Outcome.FAILED,
    "amd": Outcome.MACHINE,
    "cancel": Outcome.CANCELLED,
}


def voipbin_outcome(hangup_reason: str | None) -> Normalised:
    """VoIPbin `hangup_reason` of a hung-up call; default unknown."""
    return Normalised(VOIPBIN_REASON_OUTCOMES.get((hangup_reason or "").strip().lower(), Outcome.UNKNOWN))


# --- Bandwidth -------------------------------------------------------------------------------------
BANDWIDTH_CAUSE_OUTCOMES: dict[str, Outcome] = {
    "busy": Outcome.BUSY,
    "timeout": Outcome.NO_ANSWER,
    "rejected": Outcome.REJECTED,
    "error": Outcome.FAILED,
    "application-error": Outcome.FAILED,
    "invalid-bxml": Outcome.FAILED,
    "cancel": Outcome.CANCELLED,
}
BANDWIDTH_THROTTLED_CAUSES = frozenset({"account-limit", "node-capacity-exceeded"})
BANDWIDTH_SIP_OUTCOMES: dict[int, Outcome] = {486: Outcome.BUSY, 603: Outcome.REJECTED}
BANDWIDTH_MACHINE_RESULTS = frozenset({"answering-machine"})


def bandwidth_outcome(
    cause: str | None, answer_time: str | None, sip_response_code: int | None
) -> Normalised:
    """Bandwidth disconnect `cause` (+ answerTime, sipResponseCode); default unknown."""
    cause = (cause or "").strip().lower()
    if cause in BANDWIDTH_THROTTLED_CAUSES:
        return Normalised(Outcome.FAILED, throttled=True)
    if cause == "hangup" and (answer_time or "").strip():
        return Normalised(Outcome.ANSWERED)
    if cause in BANDWIDTH_CAUSE_OUTCOMES:
        return Normalised(BANDWIDTH_CAUSE_OUTCOMES[cause])
    if sip_response_code in BANDWIDTH_SIP_OUTCOMES:
        return Normalised(BANDWIDTH_SIP_OUTCOMES[sip_response_code])
    return Normalised(Outcome.UNKNOWN)


# --- shared coercions ------------------------------------------------------------------------------
NOT_YET_PREFIX = "9999-"  # VoIPbin's "has not happened" timestamp


def parse_time(value: Any, zone: str | None = None) -> datetime | None:
    """A carrier timestamp as an aware UTC datetime; None when missing, empty, 'not yet' or unparseable.

    Naive values ('YYYY-MM-DD HH:MM:SS[.ffffff]') are read in `zone` (an IANA name; Plivo/Vobiz send
    the console's local time), UTC when it is None or unknown."""
    if not isinstance(value, str) or not value.strip() or value.startswith(NOT_YET_PREFIX):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=time_zone(zone))
    return parsed.astimezone(UTC)


def time_zone(name: str | None) -> tzinfo:
    """The zone an account's naive callback times are in; UTC for None, empty or an unknown name."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def parse_int(value: Any) -> int | None:
    """An integer field ('12', 12, '12.0'); None when missing or not a number."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None


def parse_decimal(value: Any) -> Decimal | None:
    """A money field as Decimal; None when missing or not a number."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


def seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    """Whole seconds from start to end, None unless both are known and in order."""
    if start is None or end is None or end < start:
        return None
    return int((end - start).total_seconds())


def event_key(call_id: str, to: str | None, kind: str, status: str | None) -> str:
    """Same for a retry/duplicate of one event, distinct across a call's different events."""
    return f"{call_id}:{to or ''}:{kind}:{status or ''}"


def require(payload: Mapping[str, Any], *names: str) -> str:
    """The first non-empty of `names` in payload, or ValueError naming the field."""
    for name in names:
        value = payload.get(name)
        if value not in (None, ""):
            return str(value)
    raise ValueError(f"callback is missing required field {' / '.join(names)}")


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON callback body that must be an object; ValueError otherwise."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"callback body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValueError("callback body is not a JSON object")
    return payload
