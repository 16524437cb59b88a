"""The do-not-call check at claim time: destinations the dispatcher just claimed whose number is on the
global list or the list of one of the campaign's accounts are finished as `dnc` before any chunk task sees
them. The same
lookup (campaigns.store.dial_store.dnc_numbers) runs again just before each request, so a number listed
while its chunk waits is still never called."""

from __future__ import annotations

import psycopg

from campaigns.states import DestinationStatus
from campaigns.store import dial_store as store


def screen_claimed(conn: psycopg.Connection, campaign_id: int, claimed: list[int]) -> list[int]:
    """`claimed` without the destinations on a DNC list (those are marked dnc)."""
    if not claimed:
        return claimed
    rows = conn.execute("SELECT id, number FROM destination WHERE id = ANY(%s)", (claimed,)).fetchall()
    listed = store.dnc_numbers(conn, [number for _, number in rows], campaign_id)
    if not listed:
        return claimed
    on_dnc = {dest_id for dest_id, number in rows if number in listed}
    store.mark_queued_as(conn, sorted(on_dnc), DestinationStatus.DNC, "dnc")
    return [dest_id for dest_id in claimed if dest_id not in on_dnc]
