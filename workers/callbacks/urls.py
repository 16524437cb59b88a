"""The URLs we give carriers for their callbacks.

A call's URLs: /callbacks/{provider}/{account_id}/{kind}/{batch}.{expires}.{mac} (workers.callbacks.tickets).
The batch id lets a bulk request's events find their attempts by (batch, To) before any id is recorded; the
MAC authenticates providers that sign nothing (TryVox, VoIPbin without a webhook secret) and, being in the
path, is covered by the signatures that sign only the URL's path (Vobiz V3, V2). The expiry is the call's
longest life plus DIALER_CALLBACK_GRACE_S. Every provider's call URLs carry it (Plivo, Vobiz, TryVox and
Bandwidth take URLs per call; the opt-out keypress action URL too), and the receiver refuses a call URL
without one, so a captured callback cannot outlive its call by more than the grace.
The per-account webhook URL (VoIPbin, configured once in its console) cannot expire: ?s={secret}. Its replays
are bounded by the signed body's own times instead (workers.callbacks.webhook_window).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from campaigns.call_options import dial_lease_s
from campaigns.config import get_settings
from workers.callbacks import tickets
from workers.providers.calls import CallbackUrls, EventKind
from workers.providers.registry import adapter_for
from workers.providers.signatures import callback_url_secret


def callback_url(provider: str, account_id: int, kind: EventKind | str, batch_id: str | None,
                 expires: int | None = None) -> str:
    """A call's callback URL with its ticket when `expires` is given, else the never-expiring form."""
    base = f"{get_settings().public_url}/callbacks/{provider}/{account_id}/{kind}"
    if expires is not None:
        return f"{base}/{tickets.issue(provider, account_id, str(kind), batch_id, expires)}"
    query = {"s": callback_url_secret(account_id)}
    if batch_id:
        query["b"] = batch_id
    return f"{base}?{urlencode(query)}"


def callback_urls_for(
    provider: str,
    account_id: int,
    batch_id: str,
    *,
    track_ringing: bool = True,
    machine_detection: bool = False,
    call_life_s: float | None = None,
) -> CallbackUrls:
    """Every callback URL of one call-creation request, valid for the call's life plus the grace, with the
    credentials the provider's callbacks must carry, if it takes any (Bandwidth)."""
    life = dial_lease_s({}) if call_life_s is None else call_life_s
    expires = int(time.time() + life + get_settings().callback_grace_s)
    username, password = adapter_for(provider).callback_credentials(account_id)

    def url(kind: EventKind) -> str:
        return callback_url(provider, account_id, kind, batch_id, expires)

    return CallbackUrls(
        answer_url=url(EventKind.ANSWER),
        hangup_url=url(EventKind.HANGUP),
        ring_url=url(EventKind.RING) if track_ringing else None,
        machine_detection_url=url(EventKind.MACHINE) if machine_detection else None,
        username=username,
        password=password,
    )


def webhook_url(provider: str, account_id: int) -> str:
    """The one per-account webhook URL for providers configured per customer (VoIPbin)."""
    return callback_url(provider, account_id, EventKind.STATUS, None)
