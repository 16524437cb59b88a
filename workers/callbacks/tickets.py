"""Callback tickets: the batch id and an expiry, MACed under the callback-URL key, in our callback URL's path.

Vobiz V3 (and Plivo/Vobiz V2) sign the callback URL without its query, and no parameters. Whatever must not
be forged therefore lives in the path: `/callbacks/{provider}/{account}/{kind}/{batch}.{expires}.{mac}`.
The expiry bounds how long any signature over that URL can be replayed, and so how long its nonce must be
remembered (workers.callbacks.nonces): the receiver keeps every signed callback's nonce until its ticket
expires, and refuses a call's callback without a ticket. Pure apart from the keys read from the settings.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from campaigns.keys import Purpose, all_keys, current_key

NO_BATCH = "-"
MAC_CHARS = 32


@dataclass(frozen=True)
class Ticket:
    batch_id: uuid.UUID | None
    expires: int  # epoch seconds


def _mac(key: bytes, provider: str, account_id: int, kind: str, batch: str, expires: int) -> str:
    message = f"ticket:{provider}:{account_id}:{kind}:{batch}:{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:MAC_CHARS]


def issue(provider: str, account_id: int, kind: str, batch_id: str | None, expires: int) -> str:
    """The path segment for one callback URL."""
    batch = batch_id or NO_BATCH
    key = current_key(Purpose.CALLBACK_URL)
    return f"{batch}.{expires}.{_mac(key, provider, account_id, kind, batch, expires)}"


def read(provider: str, account_id: int, kind: str, segment: str, now: float) -> Ticket | None:
    """The ticket of a callback URL, or None when forged, malformed or expired."""
    parts = segment.split(".")
    if len(parts) != 3 or len(parts[2]) != MAC_CHARS or not parts[1].isdigit() or len(parts[1]) > 12:
        return None
    batch, expires, given = parts[0], int(parts[1]), parts[2]
    found = False
    for key in all_keys(Purpose.CALLBACK_URL):  # a rotated-out key still covers the calls in flight
        found |= hmac.compare_digest(given.encode(), _mac(key, provider, account_id, kind, batch,
                                                          expires).encode())
    if not found or expires < now:
        return None
    if batch == NO_BATCH:
        return Ticket(None, expires)
    try:
        return Ticket(uuid.UUID(batch), expires)
    except ValueError:
        return None
