"""Destinations created with a campaign: the rows a load or a clone starts it with, every one pending.

Both run in their caller's transaction (the load's, the clone's), so a campaign and its destinations
commit together or not at all.
"""

from __future__ import annotations

import psycopg

from campaigns.states import DestinationStatus

# The first line of each number becomes the destination, unless the number is on a do-not-call list; rows
# go in file order, so dialing follows the file. `load_ranked` is the loader's TEMP table of the staged
# rows ranked by number (campaigns.loader.RANK_SQL).
INSERT_LOADED_DESTINATIONS = """
INSERT INTO destination (campaign_id, line_no, number, variables, timezone)
SELECT %(campaign_id)s, line_no, number, variables, timezone FROM load_ranked
WHERE line_no = first_line AND NOT on_dnc ORDER BY line_no
"""
# A clone takes every destination that could ever be dialed, in the original's order, as new and pending.
COPY_DIALABLE_DESTINATIONS = (
    "INSERT INTO destination (campaign_id, line_no, number, variables, timezone) "
    "SELECT %s, line_no, number, variables, timezone FROM destination "
    f"WHERE campaign_id = %s AND status <> '{DestinationStatus.INVALID.value}' ORDER BY id"
)


def insert_loaded_destinations(conn: psycopg.Connection, *, campaign_id: int) -> int:
    """The loaded campaign's destinations, from the loader's ranked staging table; returns how many."""
    return conn.execute(INSERT_LOADED_DESTINATIONS, {"campaign_id": campaign_id}).rowcount


def copy_dialable_destinations(
    conn: psycopg.Connection, *, from_campaign_id: int, to_campaign_id: int
) -> int:
    """A clone's destinations: the original's, all but the invalid, pending again; returns how many."""
    return conn.execute(COPY_DIALABLE_DESTINATIONS, (to_campaign_id, from_campaign_id)).rowcount
