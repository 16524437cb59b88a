"""The bearer credential of an `Authorization` header (read by the API's request guard, its /metrics and each
worker's exporter), and the constant-time check of DIALER_METRICS_TOKEN shared by the last two
(workers.entrypoints.api.metrics_auth, worker_server)."""

from __future__ import annotations

import hmac


def bearer_credential(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, or None."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def is_metrics_token(credential: str, token: str | None) -> bool:
    """True if `credential` is the configured metrics token (constant time; no token configured: False)."""
    if not token:
        return False
    return hmac.compare_digest(credential.encode(), token.encode())
