"""Who may read /metrics, and how much: a bearer credential that is either DIALER_METRICS_TOKEN (the
scraper's own token, compared in constant time, no database read) or a valid API key. The token and admin
keys read every series; an operator or viewer key reads only its accounts' series
(workers.metrics.scoped_exposition). The metrics name accounts and campaigns and their volumes, and every
scrape used to cost Postgres aggregates over call_attempt, so they are not anonymous. /metrics checks this
itself (the operator routes' guard leaves it out)."""

from __future__ import annotations

from starlette.requests import Request

from campaigns.api_keys import Role, verify_api_key_async
from campaigns.config import get_settings
from workers.metrics.scrape_auth import bearer_credential, is_metrics_token

EVERY_ACCOUNT = "every account"
Scope = frozenset[int] | str | None  # None: refused; EVERY_ACCOUNT; or the account ids it may read


async def scrape_scope(request: Request) -> Scope:
    """What the request may read: EVERY_ACCOUNT (metrics token, admin key), its accounts' ids (operator or
    viewer key), or None (no valid credential). Keys are checked on the API's pool."""
    credential = bearer_credential(request.headers.get("authorization"))
    if credential is None:
        return None
    if is_metrics_token(credential, get_settings().metrics_token):
        return EVERY_ACCOUNT
    async with request.app.state.pool.connection() as conn:
        holder = await verify_api_key_async(conn, credential)
    if holder is None:
        return None
    return EVERY_ACCOUNT if holder.role is Role.ADMIN else holder.account_ids
