"""The one small interface every provider adapter implements.

An adapter declares what the system knows about its provider as data (`traits`, workers.providers.traits)
and fills a few hooks in code: build the call-creation request (one or several destinations) and read the
carrier's answer to it, verify and parse its callbacks, and, where its API has them, build status lookups and
hang-ups. Sending is not an adapter's: the dialer sends a create request at its booked instant
(workers.dialing.send_booking); `create_calls`, `fetch_call_status` and `hang_up` send at once on a pooled
client (workers.providers.http), which maps every failure to workers.providers.errors. Policy (budgets,
retries, state) lives in the dialer. The values crossing this interface are in workers.providers.calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import httpx

from workers.providers.calls import (
    AccountCredentials,
    Authenticated,
    CallbackEvent,
    CallsAccepted,
    IncomingCallback,
    LookedUp,
    OutboundCall,
)
from workers.providers.errors import AuthFailed
from workers.providers.http import fetch_record, send
from workers.providers.traits import CallLimit, ProviderTraits


class ProviderAdapter(ABC):
    """One provider's call-creation API and callbacks."""

    traits: ClassVar[ProviderTraits]

    @abstractmethod
    def create_request(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> httpx.Request:
        """The call-creation request, built on `client` (its default headers and timeouts) and not sent;
        ValueError or a ProviderError when the call cannot be asked of this provider."""

    @abstractmethod
    def read_create_answer(
        self, response: httpx.Response, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """The ids in the carrier's 2xx answer; Ambiguous when it accepted but names no call."""

    def create_calls(
        self, client: httpx.Client, account: AccountCredentials, call: OutboundCall
    ) -> CallsAccepted:
        """Create the calls now, sent once on `client` (unbooked: the dialer's own send is timed); raise a
        workers.providers.errors.ProviderError on failure."""
        response = send(client, self.create_request(client, account, call), account)
        return self.read_create_answer(response, account, call)

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

    def callback_credentials(self, account_id: int) -> tuple[str | None, str | None]:
        """HTTP Basic credentials the carrier must send with its callbacks; none for most providers."""
        return None, None

    @abstractmethod
    def calls_url(self, account: AccountCredentials) -> str:
        """The calls collection URL of this account."""

    def call_url(self, account: AccountCredentials, call_id: str) -> str:
        """One call's URL, for its status."""
        return f"{self.calls_url(account)}/{call_id}"

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """Headers that authenticate a request; none for a provider that takes a query token."""
        return {}

    def auth_params(self, account: AccountCredentials) -> dict[str, str]:
        """Query parameters that authenticate a request; none for a provider that takes headers."""
        return {}

    def fetch_call_status(
        self,
        client: httpx.Client,
        account: AccountCredentials,
        request_uuid: str | None,
        call_uuid: str | None,
    ) -> CallbackEvent | None:
        """Ask the carrier what became of a call (reaper); None when the API cannot tell or does not
        know the call (404). Providers with a status API fill in `status_request` and `event_from_record`."""
        call_id = self.status_lookup_id(request_uuid, call_uuid)
        if not self.traits.api.has_call_status or not call_id:
            return None
        record = fetch_record(client, self.status_request(client, account, call_id), account)
        if record is None:
            return None
        looked_up = LookedUp(request_uuid, call_uuid, call_id, account.time_zone)
        return self.event_from_record(record, looked_up)

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """The id the status API takes."""
        return call_uuid or request_uuid

    def status_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str
    ) -> httpx.Request:
        """The GET of one call's record."""
        if not self.traits.api.has_call_status:
            raise TypeError(f"{self.traits.kind} has no call status API")
        return client.build_request(
            "GET",
            self.call_url(account, call_id),
            headers=self.auth_headers(account),
            params=self.auth_params(account) or None,
        )

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        """The carrier's record of a call, in our words (naive times in `looked_up.time_zone`)."""
        raise TypeError(f"{self.traits.kind} has no call status API")

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

    def limits_the_dialer_enforces(self, account: AccountCredentials) -> frozenset[CallLimit]:
        """The campaign limits this account's carrier is not told, so the dialer ends its calls at them
        (workers.housekeeping.call_limits): the provider's `traits.api.dialer_enforces`, which an adapter
        narrows where an account option says how the carrier reads its page (Vobiz `hangup_on_ring`)."""
        return self.traits.api.dialer_enforces

    def hangup_request(
        self, client: httpx.Client, account: AccountCredentials, call_id: str, *, placed: bool
    ) -> httpx.Request | None:
        """The request that ends one live call, named by its call id (`placed`) or, before the carrier has
        given one, its request id; None without a hang-up API."""
        return None
