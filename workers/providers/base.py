"""The one small interface every provider adapter implements, and the value types crossing it.

An adapter builds the HTTP request for one call-creation (one or several destinations), sends it on the
shared pooled httpx client, parses the ids out of the answer and maps every failure to
workers.providers.errors.
It also parses and verifies that provider's callbacks. Policy (budgets, retries, state) lives in the dialer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from campaigns.accounts import AccountCredentials as AccountCredentials  # the adapters' view of an account
from campaigns.states import Outcome

if TYPE_CHECKING:
    from workers.providers.keypress import KeypressDialect


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
    the URL's query and the parameters (Vobiz V3 and V2 sign scheme://host/path and the nonce only)."""

    nonce: str | None = None
    covers_request: bool = True


class ProviderAdapter(ABC):
    """One provider's call-creation API and callbacks."""

    kind: ClassVar[str]
    default_base_url: ClassVar[str]  # the carrier's API root, for an account added without --base-url
    max_destinations_per_request: ClassVar[int] = 1
    has_call_status: ClassVar[bool] = False
    # The status API answers for a bare request id of a bulk answer (the reaper asks with the batch's ids
    # when every callback of a bulk was lost).
    request_ids_lookup: ClassVar[bool] = False
    # Callbacks: the one-time nonce headers of signed callbacks (checked for replays and kept with the
    # event), the status a stored callback is acknowledged with, and what answers an answer callback:
    # call-control XML whose verb `speak_verb` plays a message, or no document at all.
    callback_nonce_headers: ClassVar[tuple[str, ...]] = ()
    max_ring_timeout_s: ClassVar[int] = 600  # the longest ring a campaign may ask of this provider
    callback_ack_status: ClassVar[int] = 200
    answer_document_kind: ClassVar[Literal["xml", "none"]] = "xml"
    speak_verb: ClassVar[str] = "Speak"
    # Opt-out keypress: the answer markup's digit-gathering dialect, or None where it cannot gather
    # (workers.providers.keypress says which and why).
    keypress: ClassVar[KeypressDialect | None] = None
    redirect_url_attribute: ClassVar[str | None] = None  # BXML: <Redirect redirectUrl="…"/>; else its text
    # Accounts: options an account must carry (name -> what it is), whether callback times are the console's
    # local time (an account `time_zone` option then applies), and whether a campaign's own answer URL can
    # be handed the call (VoIPbin takes its call control at creation and fetches none).
    required_account_options: ClassVar[Mapping[str, str]] = {}
    local_callback_times: ClassVar[bool] = False
    takes_answer_url: ClassVar[bool] = True

    # The speak verb's attributes for a campaign's voice and language, and the verb that plays audio.
    speak_voice_attribute: ClassVar[str] = "voice"
    speak_language_attribute: ClassVar[str] = "language"
    play_verb: ClassVar[str] = "Play"
    # A hang-up API for live calls (`dialer campaign cancel --hangup`). None of the seeds documents one;
    # the adapters that have one follow the provider's public API reference (docs/DESIGN.md lists them).
    has_hangup: ClassVar[bool] = False

    @abstractmethod
    def create_calls(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """Send one call-creation request; raise a workers.providers.errors.ProviderError on failure."""

    @abstractmethod
    def verify_callback(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> bool:
        """True when the callback really comes from this account's carrier (constant-time compares)."""

    def authenticate(
        self, account: AccountCredentials, callback: IncomingCallback, url_secret: str | None
    ) -> Authenticated | None:
        """What verified the callback, or None when nothing did; signers with nonces say which one."""
        return Authenticated() if self.verify_callback(account, callback, url_secret) else None

    @abstractmethod
    def parse_callback(self, callback: IncomingCallback) -> CallbackEvent:
        """The callback in our words; raises ValueError naming the missing/invalid field."""

    def fetch_call_status(
        self,
        client: httpx.Client,
        account: AccountCredentials,
        request_uuid: str | None,
        call_uuid: str | None,
    ) -> CallbackEvent | None:
        """Ask the carrier what became of a call (reaper); None when the API cannot tell or does not
        know the call (404). Providers with a status API fill in `status_request` and `event_from_record`."""
        from workers.providers.http import fetch_record  # http builds on these types: import when used

        call_id = self.status_lookup_id(request_uuid, call_uuid)
        if not self.has_call_status or not call_id:
            return None
        record = fetch_record(client, self.status_request(client, account, call_id), account)
        if record is None:
            return None
        looked_up = LookedUp(request_uuid, call_uuid, call_id, account.time_zone)
        return self.event_from_record(record, looked_up)

    def hangup_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str, *, placed: bool
    ) -> httpx.Request | None:
        """The request that ends one live call, named by its call id (`placed`) or, before the carrier has
        given one, its request id; None without a hang-up API."""
        return None

    def hang_up(
        self,
        client: httpx.Client,
        account: AccountCredentials,
        request_uuid: str | None,
        call_uuid: str | None,
    ) -> bool:
        """End a live call. True if the carrier took the request, False if it cannot (no API, no id) or no
        longer knows the call (404: already ended); other answers raise their ProviderError. Its final
        callback still arrives and is recorded as usual."""
        from workers.providers.errors import AuthFailed
        from workers.providers.http import send  # http builds on these types: import when used

        call_id = call_uuid or request_uuid
        request = self.hangup_request(client, account, call_id, placed=bool(call_uuid)) if call_id else None
        if request is None:
            return False
        try:
            send(client, request, account, idempotent=True)
        except AuthFailed as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """The id the status API takes."""
        return call_uuid or request_uuid

    @abstractmethod
    def calls_url(self, account: AccountCredentials) -> str:
        """The calls collection URL of this account."""

    def call_url(self, account: AccountCredentials, call_id: str) -> str:
        """One call's URL, for its status."""
        return f"{self.calls_url(account)}/{call_id}"

    def callback_credentials(self, account_id: int) -> tuple[str | None, str | None]:
        """HTTP Basic credentials the carrier must send with its callbacks; none for most providers."""
        return None, None

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """Headers that authenticate a request; none for a provider that takes a query token."""
        return {}

    def auth_params(self, account: AccountCredentials) -> dict[str, str]:
        """Query parameters that authenticate a request; none for a provider that takes headers."""
        return {}

    def status_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str
    ) -> httpx.Request:
        """The GET of one call's record."""
        if not self.has_call_status:
            raise TypeError(f"{self.kind} has no call status API")
        return client.build_request(
            "GET",
            self.call_url(account, call_id),
            headers=self.auth_headers(account),
            params=self.auth_params(account) or None,
        )

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        """The carrier's record of a call, in our words (naive times in `looked_up.time_zone`)."""
        raise TypeError(f"{self.kind} has no call status API")
