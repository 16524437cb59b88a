"""Vobiz: Plivo-compatible calls and callbacks; X-Auth-ID/X-Auth-Token headers; V3 signs the URL only.

Differences from Plivo that its seed (Vobiz's Make an Outbound Call page) makes, and the readings taken
where it is silent (docs/PROVIDERS.md, each tested against a simulator mode):
- No `ring_timeout`; `hangup_on_ring` is the "max duration (in seconds) from start of ringing to hangup"
  (Advanced Parameters: `hangup_on_ring`). Read literally it bounds ringing *and* talk; it may bound the
  ringing only. The account option `hangup_on_ring` says which: "ring" sends the campaign's ring timeout;
  "call" (the default, safe under both) sends ring timeout + time limit, so no answered call is cut short of
  its time limit, and the dialer ends a call still unanswered at its ring timeout through the hang-up API (its
  "ring" limit: traits.api.dialer_enforces, narrowed per account by limits_the_dialer_enforces;
  workers.housekeeping.call_limits).
- 200 OK on success (Success Response (200 OK)); request_uuid is "equivalent to call_uuid" (Success Response
  (200 OK)): lookups take either.
- A bulk answer's request_uuid is a string; "each destination is delivered its own UUID via the callback
  URLs" (Success Response (200 OK)): bulk callbacks are matched by (batch, To) and give each attempt its own
  id.
- At most 1000 destinations (Required Parameters: `to`), counted as given: Plivo's limit is on unique ones
  (plivo Arguments: `to`).
- No sip_headers and no callback-retry settings on the page: refused (traits.options).
- V3 signs the callback URL without its query (the project brief's provider reference; the page is silent): a
  signature over the URL with its query is accepted too, as neither covers the parameters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from workers.providers.calls import AccountCredentials, IncomingCallback, OutboundCall
from workers.providers.plivo import MACHINE_DETECTION_MODES, PLIVO_OPTIONS, PlivoAdapter
from workers.providers.signatures import vobiz_v3_signature
from workers.providers.traits import (
    AccountRules,
    CallbackRules,
    CallLimit,
    CallOptionSupport,
    ProviderTraits,
)

# Account option: what the carrier's hangup_on_ring counts, the first the default.
HANGUP_ON_RING_READINGS = ("call", "ring")
VOBIZ_OPTIONS = PLIVO_OPTIONS - {"sip_headers", "callback_retries"}


def hangup_on_ring_reading(account: AccountCredentials) -> str:
    """"call" (ringing and talk, the page's literal words) unless the account says "ring"."""
    return "ring" if account.options.get("hangup_on_ring") == "ring" else "call"


def vobiz_ring_fields(reading: str, call: OutboundCall) -> dict[str, int]:
    """`hangup_on_ring` under the account's reading: the ring timeout when it bounds the ringing only; ring
    timeout + time limit when it bounds the whole call (an answered call keeps its whole time limit)."""
    if reading == "ring":
        return {"hangup_on_ring": call.ring_timeout}
    return {"hangup_on_ring": call.ring_timeout + call.time_limit}


class VobizAdapter(PlivoAdapter):
    """Vobiz Voice API: POST /api/v1/Account/{auth_id}/Call/ (PascalCase, trailing slash)."""

    traits: ClassVar[ProviderTraits] = replace(
        PlivoAdapter.traits,
        kind="vobiz",
        default_base_url="https://api.vobiz.ai",
        # Request and call ids interchangeable; hangup_on_ring may bound the talk: the dialer ends the ring.
        api=replace(PlivoAdapter.traits.api, request_ids_lookup=True, dialer_enforces=frozenset({"ring"})),
        callbacks=CallbackRules(nonce_headers=("x-vobiz-signature-v3-nonce", "x-vobiz-signature-v2-nonce")),
        accounts=AccountRules(local_callback_times=True, choices={"hangup_on_ring": HANGUP_ON_RING_READINGS}),
        options=CallOptionSupport(
            supported=VOBIZ_OPTIONS,
            # Machine Detection Parameters: `machine_detection`: true, hangup
            machine_detection_modes=MACHINE_DETECTION_MODES,
            destination_kinds=frozenset({"tel", "sip"}),  # Required Parameters: `to`: numbers and SIP URIs
        ),
    )
    api_prefix: ClassVar[str] = "/api/v1"
    v3_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v3", "x-vobiz-signature-ma-v3")
    v3_nonce_header: ClassVar[str] = "x-vobiz-signature-v3-nonce"
    v2_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v2", "x-vobiz-signature-ma-v2")
    v2_nonce_header: ClassVar[str] = "x-vobiz-signature-v2-nonce"
    v3_signs_request: ClassVar[bool] = False

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """X-Auth-ID / X-Auth-Token."""
        return {"X-Auth-ID": account.auth_id, "X-Auth-Token": account.auth_token}

    def check_destination_count(self, call: OutboundCall) -> None:
        """At most 1000 destinations as given, repeats included (Required Parameters: `to`)."""
        limit = self.traits.limits.max_destinations
        if not call.destinations:
            raise ValueError("OutboundCall.destinations is empty")
        if len(call.destinations) > limit:
            raise ValueError(f"{len(call.destinations)} destinations exceed Vobiz's {limit} per request")

    def ring_fields(self, account: AccountCredentials, call: OutboundCall) -> dict[str, int]:
        return vobiz_ring_fields(hangup_on_ring_reading(account), call)

    def limits_the_dialer_enforces(self, account: AccountCredentials) -> frozenset[CallLimit]:
        """The ring timeout under the "call" reading (hangup_on_ring then carries ring + time limit); none
        under "ring", where hangup_on_ring is the ring timeout and the carrier ends the ringing itself."""
        return self.traits.api.dialer_enforces if hangup_on_ring_reading(account) == "call" else frozenset()

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """Either id: the seed makes them interchangeable."""
        return call_uuid or request_uuid

    def v3_expected(
        self, account: AccountCredentials, callback: IncomingCallback, nonce: str
    ) -> tuple[str, ...]:
        """Vobiz V3 signs the callback URL without its query, and no parameters; or, in the other reading,
        the URL with its query."""
        token, url = account.auth_token, callback.url
        return (vobiz_v3_signature(token, url, nonce), vobiz_v3_signature(token, url, nonce, with_query=True))
