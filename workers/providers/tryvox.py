"""TryVox: one destination per request, Bearer auth, webhooks authenticated by a URL secret.

Its seed (TryVox's Make a Call page) gives the request and the create answer in full:
- numbers are E.164 (Request Parameters: `from`, `to`, and Notes): a SIP URI is refused here, before
  anything is sent (and at load, by `traits.options.destination_kinds`);
- `machine_detection` is Enable/Disable only (Request Parameters: `machine_detection`) and the page publishes
  no machine result and no way to hang up on one: "true" (detect, and report where a webhook says) is taken,
  "hangup" is not (refused at campaign start by `traits.options`, and here if it ever reaches a request);
- `fallback_url` (Request Parameters: `fallback_url`) is the campaign's own;
- `call_uuid` is the id "for subsequent operations" (Response Fields): the status lookup asks by it and never
  by request_uuid. The lookup endpoint itself (GET …/calls/{call_uuid}) is not on the page: assumed, and a
  carrier without it (404/405) leaves the attempt to its callbacks and evidence window. No hang-up endpoint is
  assumed at all.
The webhooks' bodies are not on the page: workers.providers.tryvox_webhooks reads every plausible shape.
"""

from __future__ import annotations

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
from workers.providers.extra_fields import merge_extra
from workers.providers.http import check_destinations, json_answer
from workers.providers.outcomes import json_object
from workers.providers.signatures import url_secret_matches
from workers.providers.tel_only import tel_number
from workers.providers.traits import CallApi, CallOptionSupport, ProviderTraits
from workers.providers.tryvox_webhooks import tryvox_event

__all__ = ["TryVoxAdapter", "tryvox_call_body", "tryvox_event"]


def tryvox_call_body(call: OutboundCall) -> dict[str, Any]:
    """The JSON body of a TryVox call create request."""
    if call.machine_detection == "hangup":
        raise Rejected("tryvox cannot hang up on a machine: its page offers machine_detection Enable/Disable "
                       "only (Request Parameters: `machine_detection`) and no machine result; use "
                       "machine_detection true or false")
    urls = call.callbacks
    body: dict[str, Any] = {
        "from": tel_number("tryvox", call.caller_id, "page, Request Parameters: `from`"),
        "to": tel_number("tryvox", call.destinations[0], "page, Request Parameters: `to`, and Notes"),
        "answer_url": urls.answer_url,
        "answer_method": "POST",
        "hangup_url": urls.hangup_url,
        "ring_timeout": call.ring_timeout,
        "time_limit": call.time_limit,
        "machine_detection": "Enable" if call.machine_detection else "Disable",
    }
    if urls.ring_url:
        body["ring_url"] = urls.ring_url
    if call.fallback_url:
        body["fallback_url"] = call.fallback_url
    merge_extra(body, call.extra)
    return body


class TryVoxAdapter(ProviderAdapter):
    """TryVox Voice API: POST /v1/voice/accounts/{auth_id}/calls with a Bearer key."""

    traits: ClassVar[ProviderTraits] = ProviderTraits(
        kind="tryvox",
        default_base_url="https://api.tryvox.io",
        api=CallApi(has_call_status=True),  # GET …/calls/{call_uuid}: assumed (module docstring)
        options=CallOptionSupport(
            # fallback_url: page, Request Parameters: `fallback_url`
            supported=frozenset({"audio_url", "fallback_url"}),
            # Request Parameters: `machine_detection`: Enable/Disable, no result, no hang-up
            machine_detection_modes=frozenset({"true"}),
            destination_kinds=frozenset({"tel"}),  # Request Parameters: `to`, and Notes: E.164
        ),
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
        """TryVox looks calls up by call_uuid only (Response Fields): a request_uuid names the API request,
        not the call, so an attempt known only by it is not looked up."""
        return call_uuid

    def event_from_record(self, record: dict[str, Any], looked_up: LookedUp) -> CallbackEvent | None:
        return tryvox_event(
            {"call_uuid": looked_up.call_uuid, "request_uuid": looked_up.request_uuid, **record},
            EventKind.STATUS,
        )
