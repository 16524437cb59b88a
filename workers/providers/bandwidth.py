"""Bandwidth Voice API v2: one call per POST, camelCase JSON, 201 + callId; callbacks carry HTTP Basic.

Checked against Bandwidth's Create Call page (docs/PROVIDERS.md has the table):
- API calls authenticate with Basic "Dashboard API Credentials" (page, Basic Authentication): an API user's
  username and password, never the account id. The account id (auth_id) goes in the path only; the API
  username is options['api_username'] (required) and the password is auth_token. options['application_id'] is
  required.
- Body fields are the seed's (Supported Parameters): callTimeout 1-300 (decimals allowed), tag at most 256
  characters. `machineDetection` is not in the seed (Bandwidth documents it elsewhere): sent only when the
  campaign asks for machine detection, and its result arrives in its own callback, before the disconnect; the
  dialer keeps a machine result through the final disconnect (a disconnect says only "hangup").
- `from`/`to` are E.164 only (Supported Parameters: `from`, `to`): a SIP URI is refused before sending (and at
  load).
- "hangup" on a machine: the seed has no machine detection. Bandwidth's machineDetectionComplete page says
  to end the call through Update Call (POST …/calls/{callId} {"state": "completed"}), its guide that the
  callback may be answered with instructions; both are done (workers.callbacks.machine_hangup).
- Get Call State (the reaper's lookup) and Update Call (hang-up) are not on the seed: assumed, and a carrier
  without them (404/405) leaves the attempt to its callbacks and evidence window.
- The seed describes no callback payload; the parser reads the disconnect fields PROVIDERS.md lists and
  tolerates any missing one except callId.
Every call gets the callback credentials `bandwidth_callback_credentials(account_id)`, which its callbacks
must carry back.
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
from workers.providers.errors import Ambiguous, AuthFailed
from workers.providers.extra_fields import merge_extra
from workers.providers.fields import require_scalars
from workers.providers.http import check_destinations, json_answer, redact
from workers.providers.keypress import BxmlGather
from workers.providers.outcomes import (
    BANDWIDTH_MACHINE_RESULTS,
    bandwidth_outcome,
    json_object,
    parse_int,
    parse_time,
    require,
    seconds_between,
)
from workers.providers.outcomes import event_key as make_event_key
from workers.providers.signatures import (
    bandwidth_auth_matches,
    bandwidth_callback_credentials,
    basic_auth_header,
)
from workers.providers.tel_only import tel_number
from workers.providers.traits import (
    AccountRules,
    AnswerMarkup,
    CallApi,
    CallbackRules,
    CallOptionSupport,
    ProviderTraits,
    RequestLimits,
)

EVENT_KINDS = {"answer": EventKind.ANSWER, "disconnect": EventKind.HANGUP}
MIN_CALL_TIMEOUT, MAX_CALL_TIMEOUT = 1, 300
MAX_TAG = 256  # page, Supported Parameters: `tag`


# Fields read as single values: a list or object in one is refused at the boundary.
READ_FIELDS = ("callId", "eventType", "cause", "answerTime", "sipResponseCode", "errorMessage", "to",
               "endTime", "startTime", "tag")

def bandwidth_call_body(call: OutboundCall, application_id: str) -> dict[str, Any]:
    """The camelCase JSON body of a Bandwidth create-call request."""
    urls = call.callbacks
    body: dict[str, Any] = {
        "from": tel_number("bandwidth", call.caller_id, "page, Supported Parameters: `from`"),
        "to": tel_number("bandwidth", call.destinations[0], "page, Supported Parameters: `to`"),
        "applicationId": application_id,
        "answerUrl": urls.answer_url,
        "answerMethod": "POST",
        "disconnectUrl": urls.hangup_url,
        "disconnectMethod": "POST",
        "callTimeout": min(MAX_CALL_TIMEOUT, max(MIN_CALL_TIMEOUT, call.ring_timeout)),
    }
    if call.tag:
        if len(call.tag) > MAX_TAG:
            raise ValueError(f"bandwidth tag is at most {MAX_TAG} characters, not {len(call.tag)}")
        body["tag"] = call.tag
    if urls.username and urls.password:
        body.update(username=urls.username, password=urls.password)
    if call.machine_detection:
        # Async detection reports to its own URL (machineDetectionComplete); on a "hangup" campaign that
        # callback's answer ends the call (workers.callbacks.machine_hangup).
        detection: dict[str, Any] = {
            "mode": "async",
            "callbackMethod": "POST",
            "callbackUrl": urls.machine_detection_url or urls.answer_url,
        }
        if urls.username and urls.password:
            detection.update(username=urls.username, password=urls.password)
        body["machineDetection"] = detection
    merge_extra(body, call.extra)
    return body


def _machine_result(payload: Mapping[str, Any]) -> str:
    result = payload.get("machineDetectionResult")
    return str(result.get("value") or "") if isinstance(result, dict) else ""


def bandwidth_event(payload: Mapping[str, Any]) -> CallbackEvent:
    """A Bandwidth callback (answer, disconnect, machineDetectionComplete, …) as a CallbackEvent."""
    require_scalars(payload, READ_FIELDS)
    call_id = require(payload, "callId")
    event_type = str(payload.get("eventType") or "")
    kind = EVENT_KINDS.get(event_type, EventKind.STATUS)
    machine = _machine_result(payload)
    if event_type == "machineDetectionComplete" and machine in BANDWIDTH_MACHINE_RESULTS:
        kind = EventKind.MACHINE
    final = kind == EventKind.HANGUP
    cause = payload.get("cause") or None
    status = cause if final else (machine or event_type)
    normalised = (
        bandwidth_outcome(cause, payload.get("answerTime"), parse_int(payload.get("sipResponseCode")))
        if final
        else None
    )
    outcome = normalised.outcome if normalised else (Outcome.MACHINE if kind == EventKind.MACHINE else None)
    error = payload.get("errorMessage")
    to = payload.get("to") or None
    answer_at, end_at = parse_time(payload.get("answerTime")), parse_time(payload.get("endTime"))
    return CallbackEvent(
        provider="bandwidth",
        kind=kind,
        event_key=make_event_key(call_id, to, kind, status),
        request_uuid=call_id,
        call_uuid=call_id,
        destination=to,
        provider_status=status,
        is_final=final,
        outcome=outcome,
        throttled=bool(normalised and normalised.throttled),
        hangup_cause=f"{cause}: {error}" if cause and error else cause,
        ring_at=parse_time(payload.get("startTime")),
        answer_at=answer_at,
        end_at=end_at,
        duration=seconds_between(answer_at, end_at) if final else None,
        tag=payload.get("tag") or None,
        payload=dict(payload),
    )


def record_as_event_payload(record: Mapping[str, Any]) -> dict[str, Any]:
    """A GET call-state record in callback words: disconnected -> disconnect, answered -> answer."""
    state = str(record.get("state") or "").lower()
    if state == "disconnected" or record.get("endTime"):
        event_type = "disconnect"
    else:
        event_type = "answer" if state == "answered" or record.get("answerTime") else state or "status"
    return {**record, "eventType": event_type, "cause": record.get("disconnectCause") or record.get("cause")}


class BandwidthAdapter(ProviderAdapter):
    """Bandwidth Voice API v2: POST /api/v2/accounts/{accountId}/calls with HTTP Basic."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="bandwidth",
        default_base_url="https://voice.bandwidth.com",
        limits=RequestLimits(max_ring_timeout_s=MAX_CALL_TIMEOUT),  # callTimeout is 1-300
        api=CallApi(has_call_status=True, has_hangup=True),
        callbacks=CallbackRules(ack_status=204),
        answer=AnswerMarkup(  # BXML
            speak_verb="SpeakSentence",
            speak_language_attribute="locale",  # en_US
            play_verb="PlayAudio",
            redirect_url_attribute="redirectUrl",
            keypress=BxmlGather(),
        ),
        accounts=AccountRules(
            required_options={
                "api_username": "the API user's username (--api-username); Bandwidth refuses the account id",
                "application_id": "the Voice application id (--application-id)",
            }
        ),
        # The page (Supported Parameters) has no caller name, SIP headers, fallback URL, digits to send,
        # detection time or callback retries: a campaign using one is refused at start. audio_url plays
        # through the BXML.
        options=CallOptionSupport(
            supported=frozenset({"audio_url"}),
            machine_detection_modes=frozenset({"true", "hangup"}),  # hangup: machine_hangup
            destination_kinds=frozenset({"tel"}),  # Supported Parameters: `from`, `to`: E.164
        ),
    )

    def calls_url(self, account: AccountCredentials) -> str:
        """The calls collection URL; auth_id is the Bandwidth account id."""
        return f"{account.base_url.rstrip('/')}/api/v2/accounts/{account.auth_id}/calls"

    def hangup_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str, *, placed: bool
    ) -> httpx.Request | None:
        """Update Call: POST …/calls/{callId} {"state": "completed"}."""
        headers = self.auth_headers(account)
        return client.build_request("POST", self.call_url(account, call_id), headers=headers,
                                    json={"state": "completed"})

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """Basic with the API user (options['api_username']) and its password (auth_token)."""
        username = account.options.get("api_username")
        if not username:
            raise AuthFailed(
                f"bandwidth account {account.account_id} has no api_username option; Bandwidth "
                "authenticates API calls with an API user's username and password, not the account id "
                "(dialer account update … --api-username USER)"
            )
        return {"Authorization": basic_auth_header(str(username), account.auth_token)}

    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        """One POST, one destination, for the account's Voice application."""
        check_destinations(call.destinations, self.traits.limits.max_destinations)
        application_id = account.options.get("application_id")
        if not application_id:
            raise AuthFailed(
                f"bandwidth account {account.account_id} has no application_id option; "
                "set the Voice application id in the provider account settings"
            )
        return client.build_request(
            "POST",
            self.calls_url(account),
            headers=self.auth_headers(account),
            json=bandwidth_call_body(call, str(application_id)),
        )

    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """201 with callId (Location as a fallback)."""
        data = json_answer(response, account)
        call_id = data.get("callId") if isinstance(data, dict) else None
        call_id = call_id or response.headers.get("location", "").rstrip("/").rsplit("/", 1)[-1] or None
        if not call_id:
            raise Ambiguous(
                f"bandwidth accepted the call but gave no callId: "
                f"{redact(response.text, account, limit=200)!r}",
                status=response.status_code,
            )
        placed = PlacedCall(to=call.destinations[0], request_uuid=call_id, call_uuid=call_id)
        return CallsAccepted(request_uuids=[call_id], calls=[placed])

    def callback_credentials(self, account_id: int) -> tuple[str | None, str | None]:
        """Every call carries per-account Basic credentials that its callbacks must send back."""
        return bandwidth_callback_credentials(account_id)

    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        """The Basic credentials we set on the call must come back."""
        return bandwidth_auth_matches(account.account_id, callback.headers.get("authorization"))

    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        """A JSON callback body."""
        return bandwidth_event(json_object(callback.body))

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        return bandwidth_event(record_as_event_payload({"callId": looked_up.call_id, **record}))
