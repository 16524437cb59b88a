"""VoIPbin: several destinations per POST /v1.0/calls?token=…, one call object per destination back.

VoIPbin webhooks are configured per customer (webhook_uri), not per call: point the customer's webhook at our
callback URL (with the account's URL secret) and, better, set a webhook secret so bodies are HMAC-signed.
The batch size is ours (VoIPbin documents none): 100 destinations keeps a request small and bounds what one
ambiguous timeout can leave unknown, while the answer still maps every call to its destination.

What an answered call does is given at creation as `actions` (or a `flow_id`), never by a document fetched
at answer time: the seed's troubleshooting (VoIPbin's Call tutorial, Troubleshooting) requires outbound
actions to start with {"type": "answer"}, so ours do (and a customer's own `actions` get one prepended). The
campaign's audio plays through a `play` action with `option.stream_urls` (Simple outbound call with media file
play); otherwise its message is the `talk` text (Simple outbound call with TTS). The seed names no action that
fetches call control from a URL, so a campaign answer URL cannot be honoured: the request is refused with that
reason rather than silently playing something else.

Not on the seed, decided here (docs/PROVIDERS.md, VoIPbin, says what each rests on):
- Machine detection is an `amd` action after the answer with `machine_handle: "hangup"` and `async: false`
  (assumed: VoIPbin's flow-action reference). Only "hangup" is offered: its result is the call's
  hangup_reason `amd`; with "continue" the result stays in the flow and no call event carries it, so
  "true" (detect and report) is refused rather than silently reporting nothing.
- Destinations are `tel` numbers in E.164 only: the seed's address types are `tel` (Simple outbound call with
  TTS) and, for registered endpoints, `endpoint` (Make a groupcall); a SIP URI is refused here (and at load,
  by traits.options.destination_kinds) instead of being sent as a guessed `{"type": "sip"}`.
- No call-creation field takes a ring timeout or a time limit (the seed shows none; assumed: VoIPbin's
  OpenAPI for POST /calls has none either, and its own limits are a 60 s dial and a 1 h call). The dialer
  ends the call itself at the campaign's limits through POST /v1.0/calls/{id}/hangup
  (workers.housekeeping.call_limits, by traits.api.dialer_enforces); rings longer than 60 s are refused.
Times are "YYYY-MM-DD hh:mm:ss.ffffff" with no zone (Simple outbound call with media file play, "ISO 8601"):
read as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

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
from workers.providers.errors import Ambiguous, Rejected
from workers.providers.extra_fields import merge_extra, refuse_redirecting_extra
from workers.providers.fields import as_mapping, require_scalars
from workers.providers.http import check_destinations, e164, json_answer, redact
from workers.providers.outcomes import event_key as make_event_key
from workers.providers.outcomes import json_object, parse_time, require, seconds_between, voipbin_outcome
from workers.providers.signatures import constant_time_equal, url_secret_matches, voipbin_signature
from workers.providers.tel_only import tel_number
from workers.providers.traits import AnswerMarkup, CallApi, CallOptionSupport, ProviderTraits, RequestLimits

DEFAULT_TALK_TEXT = "Hello. This is an automated call. Goodbye."
# Event names (brief table); "call_hungup" is the spelling of VoIPbin's own webhook design notes. The call's
# `status` decides first, so a stream of `call_updated` events reads the same.
TYPE_KINDS = {
    "call_ringing": EventKind.RING,
    "call_progressing": EventKind.ANSWER,
    "call_hangup": EventKind.HANGUP,
    "call_hungup": EventKind.HANGUP,
}
STATUS_KINDS = {"ringing": EventKind.RING, "progressing": EventKind.ANSWER, "hangup": EventKind.HANGUP}
SIGNATURE_HEADER = "x-voipbin-signature"
SIGNATURE_PREFIX = "sha256="
VOIPBIN_MAX_RING_S = 60  # assumed: VoIPbin's call manager ends an unanswered outgoing call at 60 s (dialout)


# Fields read as single values: a list or object in one is refused at the boundary.
READ_FIELDS = ("id", "status", "hangup_reason", "tm_progressing", "tm_hangup", "tm_ringing")

def voipbin_address(destination: str) -> dict[str, str]:
    """A VoIPbin `tel` address in E.164; a SIP URI is refused (the seed gives it no address type)."""
    where = "its call page gives SIP addresses no type: tel numbers in E.164, and registered endpoints"
    return {"type": "tel", "target": tel_number("voipbin", destination, where)}


def voipbin_actions(call: OutboundCall, text: str, language: str) -> list[dict[str, Any]]:
    """answer, then amd when machine hang-up is asked for, then the audio (play) or the message (talk),
    then hangup."""
    actions: list[dict[str, Any]] = [{"type": "answer"}]
    if call.machine_detection == "hangup":
        actions.append({"type": "amd", "option": {"machine_handle": "hangup", "async": False}})
    elif call.machine_detection:
        raise Rejected(
            f"voipbin: machine_detection {call.machine_detection!r} is not offered: VoIPbin reports a "
            "machine only by hanging it up (hangup_reason amd); use machine_detection hangup, or none"
        )
    if call.audio_url:
        actions.append({"type": "play", "option": {"stream_urls": [call.audio_url]}})
    else:
        actions.append({"type": "talk", "option": {"text": text, "language": language}})
    actions.append({"type": "hangup"})
    return actions


def voipbin_call_body(call: OutboundCall) -> dict[str, Any]:
    """The JSON body: source, destinations, then flow_id or actions (extra['actions'] or our script)."""
    if call.script_url:
        raise Rejected(
            "voipbin cannot hand an answered call to an answer URL (its API takes the call's actions or a "
            "flow_id at creation): give the campaign a message, or extra.actions / extra.flow_id"
        )
    refuse_redirecting_extra(call.extra)  # as stored: its paths are the campaign's (merge_extra checks again)
    extra = dict(call.extra)
    text = extra.pop("talk_text", None) or call.message or DEFAULT_TALK_TEXT
    language = extra.pop("talk_language", "en-US")
    body: dict[str, Any] = {
        "source": {"type": "tel", "target": e164(call.caller_id)},
        "destinations": [voipbin_address(d) for d in call.destinations],
    }
    own_actions = extra.get("actions")
    if isinstance(own_actions, list) and own_actions:
        first = own_actions[0]
        if not (isinstance(first, dict) and first.get("type") == "answer"):
            extra["actions"] = [{"type": "answer"}, *own_actions]
    elif not extra.get("flow_id"):
        body["actions"] = voipbin_actions(call, text, language)
    merge_extra(body, extra)
    return body


def accepted_from_answer(data: Any) -> CallsAccepted:
    """A JSON list of calls, or {"calls": […], "groupcalls": […]}: one PlacedCall per call object."""
    groupcalls: list[Any] = []
    if isinstance(data, list):
        calls = data
    elif isinstance(data, dict) and ("calls" in data or "groupcalls" in data):
        calls, groupcalls = data.get("calls") or [], data.get("groupcalls") or []
    elif isinstance(data, dict) and data.get("id"):
        calls = [data]
    else:
        calls = []
    placed = [
        PlacedCall(
            to=(c.get("destination") or {}).get("target"), request_uuid=str(c["id"]), call_uuid=str(c["id"])
        )
        for c in calls
        if isinstance(c, dict) and c.get("id")
    ]
    ids = [p.request_uuid for p in placed if p.request_uuid]
    for group in groupcalls:
        if isinstance(group, dict):
            ids.extend(str(i) for i in group.get("call_ids") or [] if i)
    return CallsAccepted(request_uuids=ids, calls=placed)


def _kind(event_type: str, status: str) -> EventKind:
    if status == "hangup":
        return EventKind.HANGUP
    return TYPE_KINDS.get(event_type) or STATUS_KINDS.get(status) or EventKind.STATUS


def voipbin_event(call: Mapping[str, Any], event_type: str, envelope: Mapping[str, Any]) -> CallbackEvent:
    """A VoIPbin call object (webhook `data` or GET record) as a CallbackEvent."""
    require_scalars(call, READ_FIELDS)
    call_id = require(call, "id")
    status = str(call.get("status") or "").strip().lower()
    kind = _kind(event_type, status)
    final = kind == EventKind.HANGUP
    to = as_mapping(call.get("destination")).get("target") or None
    answer_at, end_at = parse_time(call.get("tm_progressing")), parse_time(call.get("tm_hangup"))
    outcome = voipbin_outcome(call.get("hangup_reason"), answer_at).outcome if final else None
    return CallbackEvent(
        provider="voipbin",
        kind=kind,
        event_key=make_event_key(call_id, to, kind, status),
        request_uuid=call_id,
        call_uuid=call_id,
        destination=to,
        provider_status=status or None,
        is_final=final,
        outcome=outcome,
        hangup_cause=call.get("hangup_reason") or None,
        ring_at=parse_time(call.get("tm_ringing")),
        answer_at=answer_at,
        end_at=end_at,
        duration=seconds_between(answer_at, end_at) if final else None,
        payload=dict(envelope),
    )


class VoipbinAdapter(ProviderAdapter):
    """VoIPbin API v1.0 with a token query parameter."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="voipbin",
        default_base_url="https://api.voipbin.net",
        limits=RequestLimits(max_destinations=100, max_ring_timeout_s=VOIPBIN_MAX_RING_S),
        # No creation field takes the ring timeout or the time limit: the dialer hangs calls up at them.
        api=CallApi(has_call_status=True, has_hangup=True, dialer_enforces=frozenset({"ring", "time"})),
        # Actions are given at creation, and no action fetches call control from a URL (seed).
        answer=AnswerMarkup(document_kind="none", takes_answer_url=False),
        options=CallOptionSupport(
            supported=frozenset({"audio_url"}),
            machine_detection_modes=frozenset({"hangup"}),
            destination_kinds=frozenset({"tel"}),
        ),
    )

    def calls_url(self, account: AccountCredentials) -> str:
        """The calls collection URL (the token goes in the query)."""
        return f"{account.base_url.rstrip('/')}/v1.0/calls"

    def auth_params(self, account: AccountCredentials) -> dict[str, str]:
        """VoIPbin takes its token in the query."""
        return {"token": account.auth_token}

    def hangup_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str, *, placed: bool
    ) -> httpx.Request | None:
        """POST /v1.0/calls/{id}/hangup?token=…"""
        return client.build_request("POST", f"{self.call_url(account, call_id)}/hangup",
                                    params=self.auth_params(account))

    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        """One POST for up to 100 destinations."""
        check_destinations(call.destinations, self.traits.limits.max_destinations)
        return client.build_request(
            "POST",
            self.calls_url(account),
            params=self.auth_params(account),
            json=voipbin_call_body(call),
        )

    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """200 with one call object per destination."""
        accepted = accepted_from_answer(json_answer(response, account))
        if not accepted.request_uuids:
            raise Ambiguous(
                f"voipbin accepted the request but listed no call ids: "
                f"{redact(response.text, account, limit=200)!r}",
                status=response.status_code,
            )
        return accepted

    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        """HMAC of the raw body when the account has a webhook secret, else the URL secret. The header is
        "sha256=<hex>" (brief table); a bare "<hex>" (VoIPbin's own verification sample) is read the same."""
        if account.webhook_secret:
            expected = voipbin_signature(account.webhook_secret, callback.body).removeprefix(SIGNATURE_PREFIX)
            given = callback.headers.get(SIGNATURE_HEADER, "").strip()
            return constant_time_equal(given.removeprefix(SIGNATURE_PREFIX).lower(), expected)
        return url_secret_matches(account.account_id, url_secret)

    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        """The {"type", "data": {call}} envelope."""
        envelope = json_object(callback.body)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ValueError("callback is missing required field data")
        return voipbin_event(data, str(envelope.get("type") or ""), envelope)

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        return voipbin_event(record, "", record) if record.get("id") else None
