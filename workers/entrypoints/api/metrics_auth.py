"""Who may read /metrics: a bearer credential that is either DIALER_METRICS_TOKEN (the scraper's own token,
compared in constant time, no database read) or any valid API key, a viewer's included. The metrics name
accounts and campaigns and their volumes, and every scrape used to cost Postgres aggregates over
call_attempt, so they are not anonymous. /metrics checks this itself (the operator routes' guard leaves it
out)."""

from __future__ import annotations

from starlette.requests import Request

from campaigns.api_keys import verify_api_key_async
from campaigns.config import get_settings
from workers.metrics.scrape_auth import bearer_credential, is_metrics_token


async def may_scrape(request: Request) -> bool:
    """The request carries the metrics token or a valid API key (checked on the API's pool)."""
    credential = bearer_credential(request.headers.get("authorization"))
    if credential is None:
        return False
    if is_metrics_token(credential, get_settings().metrics_token):
        return True
    async with request.app.state.pool.connection() as conn:
        return await verify_api_key_async(conn, credential) is not None
