"""The values that cross an adapter: a call-creation request and its answer, a status lookup, and a carrier
callback as received and in our words. Adapters and their callers import them from here; none has
behaviour beyond its fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from campaigns.accounts import AccountCredentials as AccountCredentials  # the adapters' view of an account
from campaigns.states import Outcome


@dataclass(frozen=True)
class CallbackUrls:
    """Where the carrier reports this request's calls. Bandwidth also gets per-call Basic credentials."""

    answer_url: str
    hangup_url: str
    ring_url: str | None = None
    machine_detection_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OutboundCall:
    """One call-creation request: the same parameters for every destination in it."""

    caller_id: str
    destinations: Sequence[str]  # E.164 (with +) or sip: URIs
    callbacks: CallbackUrls
    ring_timeout: int = 60
    time_limit: int = 14400
    machine_detection: str | None = None  # None, "true" or "hangup"
    tag: str | None = None  # our batch id, echoed back where the provider supports it
    message: str | None = None  # what an answered call hears (providers that take actions at creation)
    script_url: str | None = None  # the campaign's own answer URL, where it has one
    audio_url: str | None = None  # played instead of the message (providers that take the script at creation)
    caller_name: str | None = None  # the caller's display name (Plivo, Vobiz)
    sip_headers: Mapping[str, str] = field(default_factory=dict)  # echoed on every callback (Plivo X-PH-)
    fallback_url: str | None = None  # the customer's URL tried when the answer URL fails
    send_digits: str | None = None  # DTMF sent once the call connects ("1w2W3")
    machine_detection_time_ms: int | None = None  # time allowed to decide human or machine
    callback_retries: int | None = None  # how often the carrier retries a failed callback, where it lets us
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific body fields, passed through


@dataclass(frozen=True)
class PlacedCall:
    """One destination's ids as the creation answer gave them."""

    to: str | None
    request_uuid: str | None
    call_uuid: str | None = None


@dataclass(frozen=True)
class CallsAccepted:
    """The carrier accepted the request. `calls` maps destinations to ids where the answer does so;
    a Plivo/Vobiz bulk answer only lists request ids (no order), matched later through callbacks."""

    request_uuids: list[str]
    calls: list[PlacedCall]
    refused: list[str] = field(default_factory=list)  # destinations of an accepted bulk it would not place


@dataclass(frozen=True)
class LookedUp:
    """What a status lookup asked with: the ids we knew, the id the API took, and the account's zone for naive
    times in the record."""

    request_uuid: str | None
    call_uuid: str | None
    call_id: str
    time_zone: str | None = None


class EventKind(StrEnum):
    RING = "ring"
    ANSWER = "answer"
    MACHINE = "machine"
    HANGUP = "hangup"
    STATUS = "status"  # an intermediate update with no lifecycle meaning of its own


@dataclass(frozen=True)
class CallbackEvent:
    """A carrier callback, parsed into our words. `event_key` is the same for a retry or duplicate of
    the same event, so storing it under a unique key makes duplicates no-ops."""

    provider: str
    kind: EventKind
    event_key: str
    request_uuid: str | None
    call_uuid: str | None
    destination: str | None
    provider_status: str | None
    is_final: bool
    outcome: Outcome | None = None  # set on final events
    throttled: bool = False  # a carrier-side limit hung it up (Plivo 1020, Bandwidth account-limit)
    hangup_cause: str | None = None
    ring_at: datetime | None = None
    answer_at: datetime | None = None
    end_at: datetime | None = None
    duration: int | None = None
    billed_duration: int | None = None
    cost: Decimal | None = None
    tag: str | None = None  # echoed batch id where the provider supports it (Bandwidth)
    # The call's recording (TryVox hangups carry "recording URLs if applicable"); the first one where there
    # are several, all of them in `payload`. Stored with the event as payload["parsed"]["recording_url"].
    recording_url: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncomingCallback:
    """A callback HTTP request as received, before it is trusted."""

    method: str
    url: str  # the public URL the carrier called (DIALER_PUBLIC_URL + path + query)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    params: Mapping[str, str]  # form or query parameters (flattened) for form/GET callbacks
    kind_hint: EventKind  # from our URL path: which of our callback URLs this is
    time_zone: str | None = None  # the account's console zone, for naive callback times (None: UTC)


@dataclass(frozen=True)
class Authenticated:
    """A callback proven to come from the account's carrier. `nonce` is the one the verified signature
    covers (the replay check claims exactly it); `covers_request` says whether that signature also covers
    the URL's query and the parameters (Vobiz V3 and V2 sign scheme://host/path and the nonce only);
    `scheme` names the signature version ("v3", "v2"): each version's nonces are claimed apart."""

    nonce: str | None = None
    covers_request: bool = True
    scheme: str = ""
