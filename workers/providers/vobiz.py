"""Vobiz: Plivo-compatible calls and callbacks; X-Auth-ID/X-Auth-Token headers; V3 signs the URL only.

Differences from Plivo that its seed (/work/shared/seeds/vobiz-make-call.txt) makes: no `ring_timeout`,
only `hangup_on_ring` (l.43, see plivo_call_body); 200 OK on success (l.46); request_uuid is "equivalent
to call_uuid" and "can be used interchangeably" (l.51-53), so a status lookup can use either, which is
what lets the reaper ask about every request id of a bulk answer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from workers.providers.calls import AccountCredentials, IncomingCallback
from workers.providers.plivo import PlivoAdapter
from workers.providers.signatures import vobiz_v3_signature
from workers.providers.traits import CallbackRules, ProviderTraits


class VobizAdapter(PlivoAdapter):
    """Vobiz Voice API: POST /api/v1/Account/{auth_id}/Call/ (PascalCase, trailing slash)."""

    traits: ClassVar[ProviderTraits] = replace(
        PlivoAdapter.traits,
        kind="vobiz",
        default_base_url="https://api.vobiz.ai",
        api=replace(PlivoAdapter.traits.api, request_ids_lookup=True),  # request and call ids interchangeable
        callbacks=CallbackRules(nonce_headers=("x-vobiz-signature-v3-nonce", "x-vobiz-signature-v2-nonce")),
    )
    api_prefix: ClassVar[str] = "/api/v1"
    ring_timeout_field: ClassVar[bool] = False
    v3_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v3", "x-vobiz-signature-ma-v3")
    v3_nonce_header: ClassVar[str] = "x-vobiz-signature-v3-nonce"
    v2_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v2", "x-vobiz-signature-ma-v2")
    v2_nonce_header: ClassVar[str] = "x-vobiz-signature-v2-nonce"
    v3_signs_request: ClassVar[bool] = False

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """X-Auth-ID / X-Auth-Token."""
        return {"X-Auth-ID": account.auth_id, "X-Auth-Token": account.auth_token}

    def status_lookup_id(self, request_uuid: str | None, call_uuid: str | None) -> str | None:
        """Either id: the seed makes them interchangeable."""
        return call_uuid or request_uuid

    def v3_expected(self, account: AccountCredentials, callback: IncomingCallback, nonce: str) -> str:
        """Vobiz V3 signs the callback URL without its query, and no parameters."""
        return vobiz_v3_signature(account.auth_token, callback.url, nonce)
