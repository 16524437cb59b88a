"""Vobiz: Plivo-compatible API at /api/v1/Account/{auth_id}/Call/ with X-Auth-ID/X-Auth-Token headers.
A lowercase path answers 401 and a missing trailing slash or unknown auth id 404 (its seed).
Callbacks carry X-Vobiz-Signature-V3 over the URL without query + "." + nonce (params not signed).
Its seed (Vobiz's Make an Outbound Call page) has no ring_timeout: a ring_timeout in the body is ignored, as a
field the API does not know, and only `hangup_on_ring` (Advanced Parameters: `hangup_on_ring`) bounds a call
from the start of ringing through the conversation (or, in the account's other reading
`hangup_on_ring_reading: ring`, the ringing only). Its machine-detection fields have the ranges of Machine
Detection Parameters. Its 1,000 destinations (Required Parameters: `to`) are counted as given, repeats
included. A bulk answer's request_uuid is one string (Success Response (200 OK), "each destination is
delivered its own UUID via the callback URLs"): by default an id of the request that names no call;
`bulk_request_uuid` "first" makes it the first destination's own id, "list" answers Plivo's list. No
sip_headers (not on the
page: an unknown field, ignored) and no configurable callback retries."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from simulator import signing
from simulator.config import Account
from simulator.ledger import CallRecord
from simulator.providers.base import ApiError, new_id, positive_int
from simulator.providers.plivo import PlivoProvider

VOBIZ_MACHINE_RANGES = (
    ("machine_detection_time", 2000, 10000),
    ("machine_detection_maximum_speech_length", 1000, 6000),
    ("machine_detection_initial_silence", 2000, 10000),
    ("machine_detection_maximum_words", 2, 10),
    ("machine_detection_initial_greeting", 1000, 5000),
)


class VobizProvider(PlivoProvider):
    name = "vobiz"
    prefix = "/api/v1"
    platform = "Vobiz"
    created_status = 200  # its seed: "Success Response (200 OK)"
    fired = ("Call fired", "Calls fired")
    answer_stir_field = "STIRVerification"
    unique_destinations_limit = False
    takes_sip_headers = False
    retry_configurable = False

    def routes(self) -> list[web.RouteDef]:
        return [*super().routes(), web.route("*", "/api/v1/{tail:.*}", self.handle_wrong_path)]

    async def handle_wrong_path(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        wrong_case = [i for i, name in ((3, "Account"), (5, "Call"))
                      if len(parts) > i and parts[i].lower() == name.lower() and parts[i] != name]
        if wrong_case:
            return self.fail(request, None, 401, "Unauthorized: use the PascalCase path /Account/…/Call/")
        return self.fail(request, None, 404, "Not found: check the auth_id and the trailing slash on /Call/")

    async def authenticate(self, request: web.Request) -> Account:
        path_id = request.match_info["auth_id"]
        account = self.account_for(path_id)
        if account is None:
            raise ApiError(404, "Account not found")
        header_id = request.headers.get("X-Auth-ID", "")
        token = request.headers.get("X-Auth-Token", "")
        if header_id != path_id or not hmac.compare_digest(token.encode(), account.auth_token.encode()):
            raise ApiError(401, self.auth_failed)
        return account

    def _limits(self, body: dict[str, Any], params: dict[str, Any]) -> None:
        params["ring_timeout"] = None  # not a Vobiz field: the carrier's own ring limit applies
        for name, low, high in VOBIZ_MACHINE_RANGES:
            if body.get(name) is not None:
                positive_int(body[name], name, low=low, high=high)

    def _accept_options(self) -> dict[str, Any]:
        return {"same_ids": True}  # its seed: request_uuid is equivalent to call_uuid

    def bulk_request_uuid(self, calls: list[CallRecord], account: Account) -> str | list[str]:
        """One string (Success Response (200 OK)) unless the account reads it as Plivo's list."""
        mode = account.bulk_request_uuid
        if mode == "list":
            return super().bulk_request_uuid(calls, account)
        return calls[0].request_uuid if mode == "first" else new_id()

    def sign(self, method: str, url: str, fields: dict[str, str], account: Account) -> dict[str, str]:
        with_query = account.vobiz_signature_url == "query"
        return signing.vobiz_headers(url, account.auth_token, with_query=with_query)
