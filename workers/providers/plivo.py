"""Plivo: bulk call creation (`to` joined by '<'), form-encoded callbacks, V3 signatures.

Vobiz is Plivo-compatible and subclasses this adapter, overriding the path, auth headers and signature.
Checked against Plivo's Make a call page (docs/PROVIDERS.md has the field-by-field table):
- StartTime/AnswerTime/EndTime are 'yyyy-MM-dd HH:mm:ss' in the console's local time zone (page, hangup_url
  parameters): read in the account option `time_zone` (IANA name, default UTC). SessionStart is UTC
  (hangup_url parameters: `SessionStart`).
- machine_detection takes only "true" or "hangup" (Arguments: `machine_detection`); detection is synchronous:
  the result comes as `Machine` on the answer/hangup callbacks. machine_detection_url (Arguments:
  `machine_detection_url`) would switch to asynchronous detection whose parameters the seed does not give, so
  we never send it.
- The seed shows no response body and no key for refused bulk destinations: a bulk answer's
  request_uuid is read as a string or a list, and nothing else is read from it.
- Options (docs/PROVIDERS.md cites each): caller_name (Arguments: `caller_name`), send_digits (Arguments:
  `send_digits`), machine_detection_time (Arguments: `machine_detection_time`), fallback_url + POST
  (Arguments: `fallback_url`, `fallback_method`), sip_headers as k=v,k=v (Arguments: `sip_headers`), and
  callback retries as Plivo's URL fragment `#rc=N&rp=…` (its callback-configuration page; the seed only says
  "Callback-retry configurable"), with `rc` in the query too for a carrier that reads it there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx

from campaigns.states import Outcome
from workers.providers.base import ProviderAdapter
from workers.providers.calls import (
    AccountCredentials,
    Authenticated,
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
from workers.providers.http import check_destinations, json_answer
from workers.providers.keypress import GetDigits
from workers.providers.outcomes import event_key as make_event_key
from workers.providers.outcomes import (
    parse_decimal,
    parse_int,
    parse_time,
    plivo_outcome,
    seconds_between,
)
from workers.providers.signatures import (
    any_signature_matches,
    basic_auth_header,
    plivo_v2_signature,
    plivo_v3_signature,
)
from workers.providers.signed_params import one_reading
from workers.providers.traits import (
    AccountRules,
    AnswerMarkup,
    CallApi,
    CallbackRules,
    CallOptionSupport,
    ProviderTraits,
    RequestLimits,
)

EVENT_KINDS = {"ring": EventKind.RING, "startapp": EventKind.ANSWER, "hangup": EventKind.HANGUP}
STATUS_KINDS = {"ringing": EventKind.RING, "in-progress": EventKind.ANSWER}
FINAL_STATUSES = frozenset(
    {"completed", "busy", "failed", "timeout", "no-answer", "cancel", "canceled", "cancelled"}
)
MACHINE_VALUES = frozenset({"true", "machine_detection"})
# the seed's only values (Arguments: `machine_detection`)
MACHINE_DETECTION_MODES = frozenset({"true", "hangup"})
# The optional campaign options Plivo's page offers (traits.options.supported).
# audio_url is played by the answer document's <Play> (workers.callbacks.answer_documents), not sent.
PLIVO_OPTIONS = frozenset({"caller_name", "sip_headers", "fallback_url", "send_digits",
                           "machine_detection_time", "callback_retries", "audio_url"})
# Retry on our 5xx (nothing stored), a refused connection and no answer in time: not on a 4xx, a refusal
# (bad signature, expired ticket) that a retry cannot change.
CALLBACK_RETRY_POLICY = "5xx,ct,rt"


# Fields read as single values: a list or object in one is refused at the boundary.
READ_FIELDS = ("RequestUUID", "ALegRequestUUID", "CallUUID", "To", "CallStatus", "Event", "Machine",
               "HangupCauseCode", "HangupCauseName", "HangupCause", "Duration", "BillDuration", "StartTime",
               "AnswerTime", "EndTime", "TotalCost")

def plivo_number(destination: str) -> str:
    """Country code + number without '+'; SIP URIs as they are."""
    return destination if destination.startswith("sip:") else destination.lstrip("+")


def with_callback_retries(url: str, retries: int | None) -> str:
    """A callback URL asking for `retries` retries: Plivo's fragment `#rc=N&rp=…` (never sent over HTTP, not
    signed), and `rc` in the query as well, for a carrier that reads it there (simulator mode "query")."""
    if retries is None:
        return url
    base = url.split("#", 1)[0]
    query = urlencode({"rc": retries})
    return f"{base}{'&' if '?' in base else '?'}{query}#rc={retries}&rp={CALLBACK_RETRY_POLICY}"


def option_fields(call: OutboundCall, supported: frozenset[str]) -> dict[str, Any]:
    """The campaign's optional fields in Plivo's words; ValueError for one this provider does not take
    (campaign start refuses it first: this guards a request built some other way)."""
    given = {
        "caller_name": call.caller_name, "sip_headers": dict(call.sip_headers) or None,
        "fallback_url": call.fallback_url, "send_digits": call.send_digits,
        "machine_detection_time": call.machine_detection_time_ms, "callback_retries": call.callback_retries,
    }
    lacking = sorted(name for name, value in given.items() if value is not None and name not in supported)
    if lacking:
        raise ValueError(f"this provider does not take {', '.join(lacking)}")
    fields: dict[str, Any] = {}
    if call.caller_name is not None:
        fields["caller_name"] = call.caller_name
    if call.send_digits is not None:
        fields["send_digits"] = call.send_digits
    if call.machine_detection_time_ms is not None:
        fields["machine_detection_time"] = call.machine_detection_time_ms
    if call.fallback_url is not None:
        fields.update(fallback_url=call.fallback_url, fallback_method="POST")
    if call.sip_headers:
        fields["sip_headers"] = ",".join(f"{key}={value}" for key, value in call.sip_headers.items())
    return fields


def plivo_call_body(
    call: OutboundCall,
    ring_fields: Mapping[str, int] | None = None,
    supported: frozenset[str] = PLIVO_OPTIONS,
) -> dict[str, Any]:
    """The JSON body of a Plivo/Vobiz Call create request. `ring_fields` bound the ringing: Plivo's
    `ring_timeout` (page, Arguments) by default; Vobiz, which has none, gives its `hangup_on_ring`
    (vobiz.py)."""
    urls = call.callbacks
    retries = call.callback_retries

    def url(value: str) -> str:
        return with_callback_retries(value, retries)

    body: dict[str, Any] = {
        "from": plivo_number(call.caller_id),
        "to": "<".join(plivo_number(d) for d in call.destinations),
        "answer_url": url(urls.answer_url),
        "answer_method": "POST",
        "hangup_url": url(urls.hangup_url),
        "hangup_method": "POST",
        "time_limit": call.time_limit,
    }
    body.update({"ring_timeout": call.ring_timeout} if ring_fields is None else ring_fields)
    if urls.ring_url:
        body.update(ring_url=url(urls.ring_url), ring_method="POST")
    if call.machine_detection:
        if call.machine_detection not in MACHINE_DETECTION_MODES:
            raise ValueError(f"machine_detection must be true or hangup, not {call.machine_detection!r}")
        body["machine_detection"] = call.machine_detection
    body.update(option_fields(call, supported))  # the customer's fallback_url is sent as given
    merge_extra(body, call.extra)
    return body


def accepted_from_answer(data: Any, call: OutboundCall, account: AccountCredentials) -> CallsAccepted:
    """request_uuid is a str for one destination, a list (no order) for bulk: normalise to a list."""
    raw = data.get("request_uuid") if isinstance(data, dict) else None
    if isinstance(raw, str):
        raw = [raw]
    uuids = [str(u) for u in raw if u] if isinstance(raw, list) else []
    if not uuids:
        raise Ambiguous(f"{account.provider} accepted the request but gave no request_uuid: {data!r:.200}")
    single = len(call.destinations) == 1 and len(uuids) == 1
    calls = [PlacedCall(to=call.destinations[0], request_uuid=uuids[0])] if single else []
    return CallsAccepted(request_uuids=uuids, calls=calls)


def form_params(body: bytes) -> dict[str, list[str]]:
    """A form-encoded body as key -> values (repeated keys kept)."""
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def machine_value(params: Mapping[str, Any]) -> str:
    """The seed's "machine parameter" (Arguments) in either spelling: Plivo's docs say `Machine`."""
    return str(params.get("Machine") or params.get("machine") or "")


def _kind(params: Mapping[str, Any], hint: EventKind) -> EventKind:
    kind = EVENT_KINDS.get(str(params.get("Event") or "").strip().lower(), hint)
    machine = str(machine_value(params)).strip().lower() in MACHINE_VALUES
    if kind in (EventKind.ANSWER, EventKind.MACHINE) and machine:
        return EventKind.MACHINE
    if kind == EventKind.MACHINE:
        return EventKind.STATUS  # machine-detection callback that found a person
    return kind


def plivo_event(
    provider: str, params: Mapping[str, Any], hint: EventKind, zone: str | None = None
) -> CallbackEvent:
    """A Plivo/Vobiz callback's parameters as a CallbackEvent; naive times are in `zone` (None: UTC)."""
    require_scalars(params, READ_FIELDS)
    request_uuid = params.get("RequestUUID") or params.get("ALegRequestUUID") or None
    call_uuid = params.get("CallUUID") or None
    if not request_uuid and not call_uuid:
        raise ValueError("callback is missing required field RequestUUID / CallUUID")
    to = params.get("To") or None
    status = params.get("CallStatus") or None
    kind = _kind(params, hint)
    final = kind == EventKind.HANGUP
    cause_code = parse_int(params.get("HangupCauseCode"))
    normalised = (
        plivo_outcome(
            status,
            cause_code,
            parse_int(params.get("Duration")),
            params.get("AnswerTime"),
            machine_value(params),
        )
        if final
        else None
    )
    outcome = normalised.outcome if normalised else (Outcome.MACHINE if kind == EventKind.MACHINE else None)
    answer_at, end_at = parse_time(params.get("AnswerTime"), zone), parse_time(params.get("EndTime"), zone)
    duration = parse_int(params.get("Duration"))
    if duration is None and final:  # the seeds' hangup has no Duration: the talk time is answer to end
        duration = seconds_between(answer_at, end_at)
    return CallbackEvent(
        provider=provider,
        kind=kind,
        event_key=make_event_key(str(call_uuid or request_uuid), to, kind, status),
        request_uuid=request_uuid,
        call_uuid=call_uuid,
        destination=to,
        provider_status=status,
        is_final=final,
        outcome=outcome,
        throttled=bool(normalised and normalised.throttled),
        hangup_cause=params.get("HangupCauseName")
        or params.get("HangupCause")
        or (str(cause_code) if cause_code is not None else None),
        ring_at=parse_time(params.get("StartTime"), zone),
        answer_at=answer_at,
        end_at=end_at,
        duration=duration,
        billed_duration=parse_int(params.get("BillDuration")),
        cost=parse_decimal(params.get("TotalCost")),
        payload=dict(params),
    )


def record_as_params(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Call retrieve record (snake_case) in callback field names, so one parser reads both."""
    status = str(record.get("call_status") or record.get("call_state") or "").lower() or None
    ended = bool(record.get("end_time")) or status in FINAL_STATUSES
    event = "Hangup" if ended else {"ringing": "Ring", "in-progress": "StartApp"}.get(status or "", "")
    return {
        "Event": event,
        "CallStatus": status,
        "CallUUID": record.get("call_uuid"),
        "RequestUUID": record.get("request_uuid"),
        "To": record.get("to_number") or record.get("to"),
        "HangupCauseCode": record.get("hangup_cause_code"),
        "HangupCauseName": record.get("hangup_cause_name"),
        "Duration": record.get("call_duration"),
        "BillDuration": record.get("bill_duration"),
        "StartTime": record.get("initiation_time"),
        "AnswerTime": record.get("answer_time"),
        "EndTime": record.get("end_time"),
        "TotalCost": record.get("total_amount"),
        "Machine": "true" if record.get("machine") in (True, "true") else None,
    }


class PlivoAdapter(ProviderAdapter):
    """Plivo Voice API: POST /v1/Account/{auth_id}/Call/ with HTTP Basic."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="plivo",
        default_base_url="https://api.plivo.com",
        limits=RequestLimits(max_destinations=1000),
        api=CallApi(has_call_status=True, has_hangup=True),
        callbacks=CallbackRules(nonce_headers=("x-plivo-signature-v3-nonce", "x-plivo-signature-v2-nonce")),
        answer=AnswerMarkup(keypress=GetDigits()),
        accounts=AccountRules(local_callback_times=True),  # StartTime/AnswerTime/EndTime: the console's zone
        options=CallOptionSupport(
            supported=PLIVO_OPTIONS,
            # Arguments: `machine_detection`: "hangup" hangs up (synchronous)
            machine_detection_modes=MACHINE_DETECTION_MODES,
            destination_kinds=frozenset({"tel", "sip"}),  # Arguments: `to`: numbers and SIP URIs
        ),
    )
    # How Vobiz, Plivo-compatible, differs in code: the path, the ring bound, and the signature headers.
    api_prefix: ClassVar[str] = "/v1"
    v3_headers: ClassVar[tuple[str, ...]] = ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
    v3_nonce_header: ClassVar[str] = "x-plivo-signature-v3-nonce"
    v2_headers: ClassVar[tuple[str, ...]] = ("x-plivo-signature-v2", "x-plivo-signature-ma-v2")
    v2_nonce_header: ClassVar[str] = "x-plivo-signature-v2-nonce"
    v3_signs_request: ClassVar[bool] = True

    def calls_url(self, account: AccountCredentials) -> str:
        """The Call collection URL (PascalCase path, trailing slash)."""
        return f"{account.base_url.rstrip('/')}{self.api_prefix}/Account/{account.auth_id}/Call/"

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """HTTP Basic auth_id:auth_token."""
        return {"Authorization": basic_auth_header(account.auth_id, account.auth_token)}

    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        """One POST for up to 1000 destinations."""
        self.check_destination_count(call)
        body = plivo_call_body(call, self.ring_fields(account, call), self.traits.options.supported)
        headers = self.auth_headers(account)
        return client.build_request("POST", self.calls_url(account), json=body, headers=headers)

    def check_destination_count(self, call: OutboundCall) -> None:
        """Plivo counts unique destinations (Arguments, `to`: "maximum number of unique destinations")."""
        check_destinations(call.destinations, self.traits.limits.max_destinations)

    def ring_fields(self, account: AccountCredentials, call: OutboundCall) -> dict[str, int] | None:
        """The fields bounding the ringing; None: Plivo's `ring_timeout` (Arguments: `ring_timeout`)."""
        return None

    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """request_uuid: a string for one destination, a list for a bulk."""
        return accepted_from_answer(json_answer(response, account), call, account)

    def v3_expected(
        self, account: AccountCredentials, callback: IncomingCallback, nonce: str
    ) -> tuple[str, ...]:
        """The V3 signatures this callback may carry (one for Plivo)."""
        params: Mapping[str, Any] = (
            callback.params if callback.method.upper() == "GET" else form_params(callback.body)
        )
        return (plivo_v3_signature(account.auth_token, callback.method, callback.url, nonce, params),)

    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        """V3 (or its -Ma- variant, same token); V2 only when options['accept_v2_signatures'] is set."""
        return self.authenticate(account, callback, url_secret) is not None

    def authenticate(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> Authenticated | None:
        """The nonce of the signature that matched: a replay check on any other header's nonce would let one
        captured signature through again with a fresh nonce beside it."""
        headers = callback.headers
        nonce = headers.get(self.v3_nonce_header)
        if nonce:
            # Every comparison is made (a list, not a generator): no early exit tells which one failed.
            matches = [any_signature_matches(headers.get(name), expected)
                       for expected in self.v3_expected(account, callback, nonce) for name in self.v3_headers]
            if any(matches):
                if not self.one_signed_reading(callback):
                    return None  # the signature fits another body as well: it vouches for neither
                return Authenticated(nonce=nonce, covers_request=self.v3_signs_request, scheme="v3")
        nonce = headers.get(self.v2_nonce_header)
        if nonce and account.options.get("accept_v2_signatures"):
            expected = plivo_v2_signature(account.auth_token, callback.url, nonce)
            if any([any_signature_matches(headers.get(name), expected) for name in self.v2_headers]):
                # V2 signs scheme://host/path + nonce
                return Authenticated(nonce=nonce, covers_request=False, scheme="v2")
        return None

    def one_signed_reading(self, callback: IncomingCallback) -> bool:
        """A V3-signed POST body must be the only reading of the concatenation signed
        (workers.providers.signed_params); a GET's query and a body V3 does not sign (Vobiz) need not."""
        if not self.v3_signs_request or callback.method.upper() == "GET":
            return True
        return one_reading(form_params(callback.body))

    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        """Ring / StartApp / Hangup form parameters (read from the body when `params` is empty)."""
        params: Mapping[str, Any] = callback.params or {
            key: values[-1] for key, values in form_params(callback.body).items()
        }
        return plivo_event(self.traits.kind, params, callback.kind_hint, callback.time_zone)

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """Plivo's Call retrieve (/Call/{call_uuid}/) takes the call uuid; a request uuid can differ from it
        and Plivo's seed names no lookup by request uuid, so without a call uuid there is nothing to ask."""
        return call_uuid

    def call_url(self, account: AccountCredentials, call_id: str) -> str:
        """.../Call/{uuid}/: the collection URL ends in a slash, and so does a call's."""
        return f"{self.calls_url(account)}{call_id}/"

    def hangup_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str, *, placed: bool
    ) -> httpx.Request | None:
        """DELETE …/Call/{call_uuid}/ (a placed call), or …/Request/{request_uuid}/ (one not placed yet)."""
        url = self.call_url(account, call_id) if placed else (
            self.calls_url(account).removesuffix("Call/") + f"Request/{call_id}/")
        return client.build_request("DELETE", url, headers=self.auth_headers(account))

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        params = {k: v for k, v in record_as_params(record).items() if v not in (None, "")}
        params.setdefault("RequestUUID", looked_up.request_uuid)
        params.setdefault("CallUUID", looked_up.call_uuid or looked_up.request_uuid)
        return plivo_event(self.traits.kind, params, EventKind.STATUS, looked_up.time_zone)
