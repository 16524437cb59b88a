"""Pure normalisation of carrier callback values: outcome tables per provider (PROVIDERS.md) and the
small coercions (times, integers, money, event keys) every callback parser shares. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaigns.states import Outcome
from workers.providers import fields


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

    Both seeds (Plivo's Make a call page, hangup_url parameters, Vobiz's Make an Outbound Call page,
    Parameters Sent to hangup_url) give the hangup_url only `CallStatus` "completed" (always), `AnswerTime`
    and no HangupCause/Duration. So a "completed" hangup is answered when it carries an answer time (or a
    positive Duration, where a richer shape sends one) and otherwise *not answered* (no_answer, which the
    retry policy can retry); the finer causes are used
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
# The seed (TryVox's Make a Call page, Response Fields; Webhooks, Hangup URL) names the statuses (ringing,
# in-progress, completed, failed, "etc.") and says the hangup carries "duration, end reason": not their
# values. "completed" therefore means answered only with evidence of an answer (answer_time, or duration > 0);
# a completed hangup that shows duration 0 and no answer time was not answered. With no duration field at all
# the status is all we have, and "completed" is taken as the call having been connected and finished.
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


# end_reason values that name a machine: one reading of a machine result the seed does not publish (the
# other is a flag, workers.providers.tryvox_webhooks); with neither, a machine reads as answered.
TRYVOX_MACHINE_END_REASONS = frozenset({
    "machine", "answering-machine", "answering_machine", "machine-detected", "machine_detected", "voicemail",
})


def tryvox_outcome(
    status: str | None,
    *,
    duration: int | None = None,
    answer_time: str | None = None,
    end_reason: str | None = None,
) -> Normalised:
    """TryVox final `status`, checked against the answer evidence; default unknown. A hangup with no status
    at all (a reading with other field names the parser did not find) is judged by the evidence alone."""
    status = (status or "").strip().lower()
    if status not in ("completed", ""):
        return Normalised(TRYVOX_STATUS_OUTCOMES.get(status, Outcome.UNKNOWN))
    if (answer_time or "").strip() or (duration or 0) > 0:
        return Normalised(Outcome.ANSWERED)
    reason = (end_reason or "").strip().lower()
    if reason in TRYVOX_END_REASON_OUTCOMES:
        return Normalised(TRYVOX_END_REASON_OUTCOMES[reason])
    if duration is not None:  # the carrier says it lasted 0 s and never answered
        return Normalised(Outcome.NO_ANSWER)
    return Normalised(Outcome.ANSWERED if status else Outcome.UNKNOWN)


# --- VoIPbin ---------------------------------------------------------------------------------------
# `hangup_reason` of a hung-up call (brief table: normal|failed|busy|cancel|timeout|noanswer|dialout|amd).
# "normal" is not proof of an answer: the seed shows it on calls with tm_ringing and without
# (VoIPbin's Call tutorial, Get call list; Get specific call), and VoIPbin's call manager (assumed: its
# source, CalculateHangupReason) also reports a call cleared while still ringing as "normal". So "normal", and
# "timeout" (VoIPbin's maximum call duration after an answer), are answered only when tm_progressing shows the
# answer; without it the callee never picked up: no_answer, which the retry policy can retry. "cancel" is
# "cancelled by the originator before it was answered": the originator is the dialer, which ends an unanswered
# call only at its ring timeout (workers.housekeeping.call_limits) or when the campaign is cancelled (where
# the applier turns a retry into cancelled), so it is no_answer too.
VOIPBIN_REASON_OUTCOMES: dict[str, Outcome] = {
    "busy": Outcome.BUSY,
    "noanswer": Outcome.NO_ANSWER,
    "dialout": Outcome.NO_ANSWER,
    "cancel": Outcome.NO_ANSWER,
    "failed": Outcome.FAILED,
    "amd": Outcome.MACHINE,
}
VOIPBIN_ANSWER_EVIDENCED = frozenset({"normal", "timeout"})


def voipbin_outcome(hangup_reason: str | None, answer_time: datetime | None = None) -> Normalised:
    """VoIPbin `hangup_reason` of a hung-up call, with `tm_progressing` (parsed: None when empty or
    "9999-01-01 …") as the evidence of an answer; default unknown."""
    reason = (hangup_reason or "").strip().lower()
    if reason in VOIPBIN_ANSWER_EVIDENCED:
        return Normalised(Outcome.ANSWERED if answer_time is not None else Outcome.NO_ANSWER)
    return Normalised(VOIPBIN_REASON_OUTCOMES.get(reason, Outcome.UNKNOWN))


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
# machineDetectionComplete results that mean a machine (not in the seed: Bandwidth's webhook page lists human,
# answering-machine, tone-detected (an end-of-message tone, sent only where enabled), silence, timeout,
# error); silence, timeout and error say nothing about who answered.
BANDWIDTH_MACHINE_RESULTS = frozenset({"answering-machine", "tone-detected"})


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
# The value parsers live at the boundary (workers.providers.fields); re-exported for the adapters.
NOT_YET_PREFIX = fields.NOT_YET_PREFIX
parse_time = fields.parse_time
time_zone = fields.time_zone
parse_int = fields.parse_int
parse_decimal = fields.parse_decimal
json_object = fields.json_object


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
