"""The URLs we give carriers for their callbacks:
/callbacks/{provider}/{account_id}/{kind}?b={batch}&s={secret}.

The batch id lets a bulk request's events find their attempts by (batch, To) before any id is recorded;
the per-account secret authenticates providers that sign nothing (TryVox, VoIPbin without a webhook secret).
"""

from __future__ import annotations

from urllib.parse import urlencode

from campaigns.config import get_settings
from workers.providers.base import CallbackUrls, EventKind
from workers.providers.registry import adapter_for
from workers.providers.signatures import callback_url_secret


def callback_url(provider: str, account_id: int, kind: EventKind | str, batch_id: str | None) -> str:
    query = {"s": callback_url_secret(account_id)}
    if batch_id:
        query["b"] = batch_id
    return f"{get_settings().public_url}/callbacks/{provider}/{account_id}/{kind}?{urlencode(query)}"


def callback_urls_for(
    provider: str,
    account_id: int,
    batch_id: str,
    *,
    track_ringing: bool = True,
    machine_detection: bool = False,
) -> CallbackUrls:
    """Every callback URL of one call-creation request, with the credentials the provider's callbacks
    must carry, if it takes any (Bandwidth)."""
    username, password = adapter_for(provider).callback_credentials(account_id)
    return CallbackUrls(
        answer_url=callback_url(provider, account_id, EventKind.ANSWER, batch_id),
        hangup_url=callback_url(provider, account_id, EventKind.HANGUP, batch_id),
        ring_url=callback_url(provider, account_id, EventKind.RING, batch_id) if track_ringing else None,
        machine_detection_url=(
            callback_url(provider, account_id, EventKind.MACHINE, batch_id) if machine_detection else None
        ),
        username=username,
        password=password,
    )


def webhook_url(provider: str, account_id: int) -> str:
    """The one per-account webhook URL for providers configured per customer (VoIPbin)."""
    return callback_url(provider, account_id, EventKind.STATUS, None)
