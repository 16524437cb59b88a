"""Vobiz: Plivo-compatible calls and callbacks; X-Auth-ID/X-Auth-Token headers; V3 signs the URL only."""

from __future__ import annotations

from typing import ClassVar

from workers.providers.base import AccountCredentials, IncomingCallback
from workers.providers.plivo import PlivoAdapter
from workers.providers.signatures import vobiz_v3_signature


class VobizAdapter(PlivoAdapter):
    """Vobiz Voice API: POST /api/v1/Account/{auth_id}/Call/ (PascalCase, trailing slash)."""

    kind: ClassVar[str] = "vobiz"
    default_base_url: ClassVar[str] = "https://api.vobiz.ai"
    callback_nonce_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v3-nonce",)
    api_prefix: ClassVar[str] = "/api/v1"
    v3_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v3", "x-vobiz-signature-ma-v3")
    v3_nonce_header: ClassVar[str] = "x-vobiz-signature-v3-nonce"
    v2_headers: ClassVar[tuple[str, ...]] = ("x-vobiz-signature-v2", "x-vobiz-signature-ma-v2")
    v2_nonce_header: ClassVar[str] = "x-vobiz-signature-v2-nonce"

    def auth_headers(self, account: AccountCredentials) -> dict[str, str]:
        """X-Auth-ID / X-Auth-Token."""
        return {"X-Auth-ID": account.auth_id, "X-Auth-Token": account.auth_token}

    def v3_expected(self, account: AccountCredentials, callback: IncomingCallback, nonce: str) -> str:
        """Vobiz V3 signs the callback URL without its query, and no parameters."""
        return vobiz_v3_signature(account.auth_token, callback.url, nonce)
