"""TryVox: one destination per request, Bearer auth, webhooks authenticated by a URL secret.

Its seed (/work/shared/seeds/tryvox-make-call.txt) gives the request and the create answer in full but
says of the webhooks only what they are for (l.44-50): not their encoding, event names or fields. So the
parser is tolerant: a JSON body, or form/query parameters (answer_method may be GET or POST, l.12); the
event from `event` ("call.answered") or `status`, else from which of our URLs was called; the outcome
from `status` checked against the answer evidence (tryvox_outcome).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from campaigns.states import Outcome
from workers.providers.base import ProviderAdapter
from workers.providers.calls import (
    AccountCredentials,
    CallbackEvent,
    CallsAccepted,
    EventKind,
    IncomingCallback,
    LookedUp,
    OutboundCall,
    PlacedCall,
)
from workers.providers.errors import Ambiguous
from workers.providers.extra_fields import merge_extra
from workers.providers.fields import require_scalars
from workers.providers.http import check_destinations, e164, json_answer
from workers.providers.outcomes import (
    TRYVOX_FINAL_STATUSES,
    json_object,
    parse_decimal,
    parse_int,
    parse_time,
    tryvox_outcome,
)
from workers.providers.outcomes import event_key as make_event_key
from workers.providers.signatures import url_secret_matches
from workers.providers.traits import CallApi, ProviderTraits

# "call.ringing" -> ringing; the word after the last dot names the event.
EVENT_KINDS = {
    "ringing": EventKind.RING,
    "answered": EventKind.ANSWER,
    "in-progress": EventKind.ANSWER,
    "hangup": EventKind.HANGUP,
    "completed": EventKind.HANGUP,
    "ended": EventKind.HANGUP,
}
STATUS_KINDS = {"ringing": EventKind.RING, "in-progress": EventKind.ANSWER, "answered": EventKind.ANSWER}


# Fields read as single values: a list or object in one is refused at the boundary.
READ_FIELDS = ("call_uuid", "request_uuid", "status", "event", "to", "end_reason", "start_time",
               "answer_time", "end_time", "duration", "bill_duration", "cost", "machine_detected")

def tryvox_call_body(call: OutboundCall) -> dict[str, Any]:
    """The JSON body of a TryVox call create request."""
    urls = call.callbacks
    body: dict[str, Any] = {
        "from": e164(call.caller_id),
        "to": e164(call.destinations[0]),
        "answer_url": urls.answer_url,
        "answer_method": "POST",
        "hangup_url": urls.hangup_url,
        "ring_timeout": call.ring_timeout,
        "time_limit": call.time_limit,
        "machine_detection": "Enable" if call.machine_detection else "Disable",
    }
    if urls.ring_url:
        body["ring_url"] = urls.ring_url
    merge_extra(body, call.extra)
    return body


def _machine(payload: Mapping[str, Any]) -> bool:
    # Undocumented but tolerated: a `machine_detected` flag when machine detection is enabled.
    return payload.get("machine_detected") in (True, "true")


def _kind(payload: Mapping[str, Any], status: str, hint: EventKind) -> EventKind:
    if status in TRYVOX_FINAL_STATUSES:
        return EventKind.HANGUP
    event = str(payload.get("event") or "").strip().lower().rsplit(".", 1)[-1]
    kind = EVENT_KINDS.get(event) or STATUS_KINDS.get(status) or hint
    return EventKind.MACHINE if kind == EventKind.ANSWER and _machine(payload) else kind


def _outcome(kind: EventKind, status: str, payload: Mapping[str, Any]) -> Outcome | None:
    machine_answered = kind == EventKind.HANGUP and status == "completed" and _machine(payload)
    if kind == EventKind.MACHINE or machine_answered:
        return Outcome.MACHINE
    if kind != EventKind.HANGUP:
        return None
    answer_time = payload.get("answer_time")
    return tryvox_outcome(
        status,
        duration=parse_int(payload.get("duration")),
        answer_time=answer_time if isinstance(answer_time, str) else None,
        end_reason=str(payload.get("end_reason") or ""),
    ).outcome


def tryvox_event(payload: Mapping[str, Any], hint: EventKind) -> CallbackEvent:
    """A TryVox webhook (or call record) as a CallbackEvent."""
    require_scalars(payload, READ_FIELDS)
    call_uuid = payload.get("call_uuid") or None
    request_uuid = payload.get("request_uuid") or None
    if not call_uuid and not request_uuid:
        raise ValueError("callback is missing required field call_uuid / request_uuid")
    status = str(payload.get("status") or "").strip().lower()
    kind = _kind(payload, status, hint)
    final = kind == EventKind.HANGUP
    to = payload.get("to") or None
    return CallbackEvent(
        provider="tryvox",
        kind=kind,
        event_key=make_event_key(str(call_uuid or request_uuid), to, kind, status),
        request_uuid=request_uuid,
        call_uuid=call_uuid,
        destination=to,
        provider_status=status or None,
        is_final=final,
        outcome=_outcome(kind, status, payload),
        hangup_cause=payload.get("end_reason") or None,
        ring_at=parse_time(payload.get("start_time")),
        answer_at=parse_time(payload.get("answer_time")),
        end_at=parse_time(payload.get("end_time")),
        duration=parse_int(payload.get("duration")),
        billed_duration=parse_int(payload.get("bill_duration")),
        cost=parse_decimal(payload.get("cost")),
        payload=dict(payload),
    )


class TryVoxAdapter(ProviderAdapter):
    """TryVox Voice API: POST /v1/voice/accounts/{auth_id}/calls with a Bearer key."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="tryvox", default_base_url="https://api.tryvox.io", api=CallApi(has_call_status=True)
    )

    def calls_url(self, account: AccountCredentials) -> str:
        """The calls collection URL."""
        return f"{account.base_url.rstrip('/')}/v1/voice/accounts/{account.auth_id}/calls"

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """Bearer key, plus X-Tenant-ID when options['tenant_id'] is set."""
        headers = {"Authorization": f"Bearer {account.auth_token}"}
        if account.options.get("tenant_id"):
            headers["X-Tenant-ID"] = str(account.options["tenant_id"])
        return headers

    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        """One POST, one destination."""
        check_destinations(call.destinations, self.traits.limits.max_destinations)
        return client.build_request(
            "POST", self.calls_url(account), json=tryvox_call_body(call), headers=self.auth_headers(account)
        )

    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """The answer carries request_uuid and call_uuid."""
        data = json_answer(response, account)
        request_uuid = data.get("request_uuid") if isinstance(data, dict) else None
        call_uuid = data.get("call_uuid") if isinstance(data, dict) else None
        if not request_uuid and not call_uuid:
            raise Ambiguous(f"tryvox accepted the request but gave no request_uuid/call_uuid: {data!r:.200}")
        placed = PlacedCall(
            to=call.destinations[0], request_uuid=request_uuid or call_uuid, call_uuid=call_uuid
        )
        return CallsAccepted(request_uuids=[str(placed.request_uuid)], calls=[placed])

    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        """TryVox signs nothing: the secret in our callback URL must be this account's."""
        return url_secret_matches(account.account_id, url_secret)

    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        """Form or query parameters when there are any (the seed does not say webhooks are JSON), else a
        JSON body."""
        payload = dict(callback.params) if callback.params else json_object(callback.body)
        return tryvox_event(payload, callback.kind_hint)

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """TryVox looks calls up by call_uuid only."""
        return call_uuid

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        return tryvox_event(
            {"call_uuid": looked_up.call_uuid, "request_uuid": looked_up.request_uuid, **record},
            EventKind.STATUS,
        )
