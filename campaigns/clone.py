"""`dialer campaign clone`: a new draft campaign with the same settings and destinations, for a one-off
re-run of a campaign that cannot run again (cancelled) or should keep its own history apart."""

from __future__ import annotations

import psycopg

from campaigns.errors import NotFound
from campaigns.states import CampaignState
from campaigns.store.loading import copy_dialable_destinations

# Everything an operator set, but not its dates (a clone is a new run, not the old schedule) or its state;
# and the uploaded file's columns, which lead its results.
COPIED_SETTINGS = (
    "account_id, caller_id, answer_url, provider_options, cps, max_concurrent, weight, default_region, "
    "window_start, window_end, window_days, timezone_override, retry_policy, observe_holidays, "
    "blackout_dates, input_columns, routing"
)


def clone_campaign(conn: psycopg.Connection, campaign_id: int, name: str | None = None) -> int:
    """Copy the campaign as a draft with every dialable destination pending; returns the new id."""
    with conn.transaction():
        row = conn.execute(
            f"INSERT INTO campaign (name, state, {COPIED_SETTINGS}) "
            f"SELECT coalesce(%s, name || ' (clone of ' || id || ')'), '{CampaignState.DRAFT.value}', "
            f"{COPIED_SETTINGS} "
            "FROM campaign WHERE id = %s RETURNING id",
            (name, campaign_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
        new_id = int(row[0])
        # Its fallbacks too, in their order with their caller ids: a clone dials through the same carriers.
        conn.execute(
            "INSERT INTO campaign_fallback_account (campaign_id, position, account_id, caller_id) "
            "SELECT %s, position, account_id, caller_id FROM campaign_fallback_account "
            "WHERE campaign_id = %s",
            (new_id, campaign_id),
        )
        copied = copy_dialable_destinations(conn, from_campaign_id=campaign_id, to_campaign_id=new_id)
        conn.execute(
            "UPDATE campaign SET rows_total = %s, rows_loaded = %s WHERE id = %s", (copied, copied, new_id)
        )
        conn.execute(
            "INSERT INTO load_warning (campaign_id, line_no, reason, detail) "
            "SELECT %s, line_no, reason, detail FROM load_warning WHERE campaign_id = %s",
            (new_id, campaign_id),
        )
    return new_id
