"""TryVox webhooks (and call records) read into our words: pure, no I/O.

The seed (TryVox's Make a Call page) names three webhook URLs and when each is called (Webhooks, Answer URL;
Webhooks, Ring URL; Webhooks, Hangup URL) but publishes no body: not its encoding, field names, event names or
machine result. Each silent point has more than one plausible reading, and the simulator has a mode for each
(docs/PROVIDERS.md, TryVox); this reader takes all of them rather than sharing one guess with the simulator:
- field names: the create answer's snake_case keys (page, Response; Response Fields), camelCase, or Plivo's
  PascalCase form fields (TryVox's request mirrors Plivo's: answer_url, ring_url, hangup_url, time_limit…);
- the event: from which of our URLs was called (the page's own division, Webhooks, Answer URL; Webhooks, Ring
  URL; Webhooks, Hangup URL); `event` ("call.hangup", "hangup", Plivo's "StartApp") and `status` only decide
  for a call record, which comes from no URL;
- a machine result: a `machine_detected`/`Machine` flag, an `end_reason` naming a machine, or none at all
  (then a machine that answered reads as answered: nothing else can be known);
- recording URLs ("recording URLs if applicable", Webhooks, Hangup URL): one URL or a list, under
  `recording_url(s)`; the first is `CallbackEvent.recording_url`, every one stays in the stored raw payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from campaigns.states import Outcome
from workers.providers.calls import CallbackEvent, EventKind
from workers.providers.fields import require_scalars
from workers.providers.outcomes import (
    TRYVOX_FINAL_STATUSES,
    TRYVOX_MACHINE_END_REASONS,
    event_key,
    parse_decimal,
    parse_int,
    parse_time,
    tryvox_outcome,
)

# Our name -> the spellings a TryVox body may use (snake_case as the create answer, camelCase, Plivo's).
SPELLINGS: dict[str, tuple[str, ...]] = {
    "call_uuid": ("call_uuid", "callUuid", "CallUUID"),
    "request_uuid": ("request_uuid", "requestUuid", "RequestUUID"),
    "status": ("status", "call_status", "callStatus", "CallStatus"),
    "event": ("event", "event_type", "eventType", "Event"),
    "to": ("to", "To"),
    "end_reason": ("end_reason", "endReason", "hangup_cause", "HangupCause", "HangupCauseName"),
    "start_time": ("start_time", "startTime", "StartTime"),
    "answer_time": ("answer_time", "answerTime", "AnswerTime"),
    "end_time": ("end_time", "endTime", "EndTime"),
    "duration": ("duration", "Duration"),
    "bill_duration": ("bill_duration", "billDuration", "BillDuration"),
    "cost": ("cost", "total_cost", "TotalCost"),
    "machine_detected": ("machine_detected", "machineDetected", "Machine", "machine"),
}
RECORDING_SPELLINGS = ("recording_url", "recordingUrl", "RecordUrl", "RecordingUrl", "recording_urls",
                       "recordingUrls", "RecordUrls", "RecordingUrls")
# A webhook's kind by the URL it came to (Webhooks, Answer URL; Webhooks, Ring URL; Webhooks, Hangup URL);
# event words only for a record, which came to none.
URL_KINDS = frozenset({EventKind.RING, EventKind.ANSWER, EventKind.HANGUP})
# "call.ringing" -> "ringing": the word after the last dot names the event.
EVENT_KINDS = {
    "ringing": EventKind.RING,
    "ring": EventKind.RING,
    "answered": EventKind.ANSWER,
    "answer": EventKind.ANSWER,
    "startapp": EventKind.ANSWER,
    "in-progress": EventKind.ANSWER,
    "hangup": EventKind.HANGUP,
    "completed": EventKind.HANGUP,
    "ended": EventKind.HANGUP,
}
MACHINE_FLAGS = frozenset({"true", "1", "yes", "machine"})


def canonical_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Our name -> the first non-empty value under any of its spellings (single values only)."""
    found: dict[str, Any] = {}
    for name, spellings in SPELLINGS.items():
        require_scalars(payload, spellings)
        for spelling in spellings:
            value = payload.get(spelling)
            if value not in (None, ""):
                found[name] = value
                break
    return found


def recording_urls(payload: Mapping[str, Any]) -> list[str]:
    """Every recording URL the body names, under any spelling, as one string or a list of them."""
    urls: list[str] = []
    for spelling in RECORDING_SPELLINGS:
        value = payload.get(spelling)
        values = value if isinstance(value, list) else [value]
        urls += [v.strip() for v in values if isinstance(v, str) and v.strip() and v.strip() not in urls]
    return urls


def machine_reported(fields: Mapping[str, Any]) -> bool:
    """A machine answered, by a flag or by the end reason (two readings of an unpublished result)."""
    flag = fields.get("machine_detected")
    if flag is True or str(flag).strip().lower() in MACHINE_FLAGS:
        return True
    return str(fields.get("end_reason") or "").strip().lower() in TRYVOX_MACHINE_END_REASONS


def event_kind(fields: Mapping[str, Any], status: str, hint: EventKind) -> EventKind:
    """Which event: a final status ends the call; else the URL it came to; else its event word or status."""
    if status in TRYVOX_FINAL_STATUSES:
        kind = EventKind.HANGUP
    elif hint in URL_KINDS:
        kind = hint
    else:
        word = str(fields.get("event") or "").strip().lower().rsplit(".", 1)[-1]
        kind = EVENT_KINDS.get(word) or EVENT_KINDS.get(status) or hint
    return EventKind.MACHINE if kind == EventKind.ANSWER and machine_reported(fields) else kind


def _outcome(kind: EventKind, status: str, fields: Mapping[str, Any]) -> Outcome | None:
    if kind == EventKind.MACHINE:
        return Outcome.MACHINE
    if kind != EventKind.HANGUP:
        return None
    if status in ("completed", "") and machine_reported(fields):
        return Outcome.MACHINE
    answer_time = fields.get("answer_time")
    return tryvox_outcome(
        status,
        duration=parse_int(fields.get("duration")),
        answer_time=answer_time if isinstance(answer_time, str) else None,
        end_reason=str(fields.get("end_reason") or ""),
    ).outcome


def tryvox_event(payload: Mapping[str, Any], hint: EventKind) -> CallbackEvent:
    """A TryVox webhook (or call record) as a CallbackEvent; ValueError when it names no call."""
    fields = canonical_fields(payload)
    call_uuid = str(fields["call_uuid"]) if "call_uuid" in fields else None
    request_uuid = str(fields["request_uuid"]) if "request_uuid" in fields else None
    if not call_uuid and not request_uuid:
        raise ValueError("callback is missing required field call_uuid / request_uuid")
    status = str(fields.get("status") or "").strip().lower()
    kind = event_kind(fields, status, hint)
    to = str(fields["to"]) if "to" in fields else None
    cause = str(fields["end_reason"]) if "end_reason" in fields else None
    urls = recording_urls(payload)
    return CallbackEvent(
        provider="tryvox",
        kind=kind,
        event_key=event_key(str(call_uuid or request_uuid), to, kind, status),
        request_uuid=request_uuid,
        call_uuid=call_uuid,
        destination=to,
        provider_status=status or None,
        is_final=kind == EventKind.HANGUP,
        outcome=_outcome(kind, status, fields),
        hangup_cause=cause,
        ring_at=parse_time(fields.get("start_time")),
        answer_at=parse_time(fields.get("answer_time")),
        end_at=parse_time(fields.get("end_time")),
        duration=parse_int(fields.get("duration")),
        billed_duration=parse_int(fields.get("bill_duration")),
        cost=parse_decimal(fields.get("cost")),
        recording_url=urls[0] if urls else None,
        payload=dict(payload),
    )
