"""The end of a campaign's life: archive it (its results stay readable, its account is freed) or delete it
(nothing of it is kept). Neither touches a campaign that may still place or hear a call."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from campaigns.errors import InvalidRequest, NotFound
from campaigns.states import CampaignState, DestinationStatus, sql_in
from campaigns.store.retired import delete_campaign_events

C = CampaignState
D = DestinationStatus

# A campaign in these states places no new call (running does; loading is still being written).
RETIRABLE = (C.DRAFT, C.PAUSED, C.COMPLETED, C.CANCELLED)
# Destinations with a call being placed or in progress: a paused campaign's last calls finish first.
IN_FLIGHT = {D.QUEUED, D.DIALING, D.RINGING, D.ANSWERED}


def no_such_campaign(campaign_id: int) -> NotFound:
    """The one message for a campaign that does not exist, whichever command named it."""
    return NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")


@dataclass(frozen=True)
class Deleted:
    campaign_id: int
    destinations: int
    attempts: int


def _lock_retirable(conn: psycopg.Connection, campaign_id: int, verb: str) -> tuple[str, str | None, object]:
    """Lock the campaign row; refuse unless it is stopped and has no call in flight. Returns its name,
    account name and archived_at."""
    row = conn.execute(
        "SELECT c.state, c.name, a.name, c.archived_at FROM campaign c "
        "LEFT JOIN provider_account a ON a.id = c.account_id WHERE c.id = %s FOR UPDATE OF c",
        (campaign_id,),
    ).fetchone()
    if row is None:
        raise no_such_campaign(campaign_id)
    state, name, account, archived_at = row
    if state not in RETIRABLE:
        raise InvalidRequest(f"campaign {campaign_id} is {state}; pause or cancel it before you {verb} it "
                             f"(`dialer campaign cancel {campaign_id}`)")
    live = conn.execute(f"SELECT count(*) FROM destination WHERE campaign_id = %s AND "
                        f"{sql_in('status', IN_FLIGHT)}", (campaign_id,)).fetchone()
    if live and live[0]:
        raise InvalidRequest(f"campaign {campaign_id} has {live[0]} call(s) in progress; {verb} it once "
                             "they end (`dialer campaign status` shows them)")
    return name, account, archived_at


def archive_campaign(conn: psycopg.Connection, campaign_id: int) -> bool:
    """Hide a stopped campaign from lists, keep its results and free its account: its schedule is removed
    and it can no longer be started, set or rerun. Returns False if it was archived already."""
    with conn.transaction():
        _, account, archived_at = _lock_retirable(conn, campaign_id, "archive")
        if archived_at is not None:
            return False
        conn.execute("UPDATE campaign SET archived_at = now(), archived_account = %s, updated_at = now() "
                     "WHERE id = %s", (account, campaign_id))
        conn.execute("DELETE FROM campaign_schedule WHERE campaign_id = %s", (campaign_id,))
    return True


def delete_campaign(conn: psycopg.Connection, campaign_id: int) -> Deleted:
    """Delete a stopped campaign and everything of it: destinations, attempts and their callbacks, runs,
    schedule, rejected rows and warnings. DNC entries (numbers that asked not to be called) are kept."""
    with conn.transaction():
        _lock_retirable(conn, campaign_id, "delete")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM destination WHERE campaign_id = %(c)s), "
            "(SELECT count(*) FROM call_attempt WHERE campaign_id = %(c)s)", {"c": campaign_id}).fetchone()
        assert counts is not None
        delete_campaign_events(conn, campaign_id)
        conn.execute("DELETE FROM campaign WHERE id = %s", (campaign_id,))  # the rest cascades
    return Deleted(campaign_id, int(counts[0]), int(counts[1]))


def require_not_archived(row: dict[str, object]) -> None:
    """Refuse to dial, configure or schedule an archived campaign (a row of campaign)."""
    if row.get("archived_at") is not None:
        raise InvalidRequest(f"campaign {row['id']} is archived; clone it to dial it again "
                             f"(`dialer campaign clone {row['id']}`)")
