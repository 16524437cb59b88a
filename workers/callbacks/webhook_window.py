"""The replay bound of a per-account webhook (VoIPbin), which cannot carry a call's expiring ticket.

VoIPbin's webhook URL is set once per customer in its console (workers.callbacks.urls.webhook_url), so
nothing in it can expire. Its body is the call object (VoIPbin's Call tutorial, Simple outbound call with
media file play), with the times of the call's changes (`tm_ringing`, `tm_progressing`, `tm_hangup`); with a
webhook secret the whole body is HMAC-signed, so those times are the carrier's. A webhook is sent when the
call changes, so its newest time is about when it was sent: one older than DIALER_CALLBACK_GRACE_S (what a
ticket allows past a call's life) is a replay, or a delivery too late to trust, and is refused. Within the
window a replay is the same call id, kind and status, which the event's unique key already makes a no-op
(events are kept far longer than the window). Without a webhook secret the body is unsigned and the URL secret
is all there is: the times prove nothing, so the window is not applied (docs/SECURITY.md says to set a
secret). Pure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workers.providers.calls import CallbackEvent


def newest_time(event: CallbackEvent) -> datetime | None:
    """The latest time the event carries (ring, answer, end), None if it carries none."""
    times = [t for t in (event.ring_at, event.answer_at, event.end_at) if t is not None]
    return max(times) if times else None


def stale(event: CallbackEvent, now: datetime, window_s: float) -> bool:
    """True when the event's newest time is older than `window_s`: a signed body captured and sent again
    after the window. An event with no time at all carries no outcome to replay and is let through."""
    newest = newest_time(event)
    return newest is not None and newest < now - timedelta(seconds=window_s)
