"""Dial-time blackout check (promise 3): a claimed destination whose local day is a public holiday of its
country, or one of the campaign's own blackout dates, is handed back until its next open window on a day
that is not (campaigns.blackouts)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from campaigns.blackouts import country_of, is_blacked_out, load_blackouts, next_open, window_day
from workers import dial_store as store

UNKNOWN_OPENING_RETRY = timedelta(hours=6)  # no open day found soon: look again later (end_at expires it)


def hold_blacked_out(
    conn: psycopg.Connection,
    campaign: store.CampaignForDial,
    queued: list[store.QueuedDestination],
    now: datetime,
) -> tuple[list[store.QueuedDestination], int]:
    """(the destinations that may be called today, how many were handed back to a later day)."""
    blackouts = load_blackouts(conn, campaign.id)
    if not blackouts.active or not queued:
        return queued, 0
    callable_today: list[store.QueuedDestination] = []
    later: dict[datetime, list[int]] = {}
    for dest in queued:
        tz = campaign.timezone_override or dest.timezone
        country = country_of(dest.number)
        if not is_blacked_out(blackouts, country, window_day(campaign.window, tz, now)):
            callable_today.append(dest)
            continue
        opening = next_open(blackouts, campaign.window, tz, country, now) or now + UNKNOWN_OPENING_RETRY
        later.setdefault(opening, []).append(dest.id)
    handed_back = sum(store.hand_back(conn, ids, opening) for opening, ids in later.items())
    return callable_today, handed_back
