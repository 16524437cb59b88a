"""What retiring a campaign or an account does to the dialing tables (campaigns.retirement,
campaigns.accounts): the store is their one writer, so the statements live here. Each runs in its caller's
transaction, beside the campaign's or account's own change."""

from __future__ import annotations

import psycopg


def delete_campaign_events(conn: psycopg.Connection, campaign_id: int) -> None:
    """Delete the callbacks of a campaign's attempts (before the campaign row, whose delete cascades to its
    destinations and attempts; events reference attempts without a cascade)."""
    conn.execute("DELETE FROM call_event WHERE attempt_id IN "
                 "(SELECT id FROM call_attempt WHERE campaign_id = %s)", (campaign_id,))


def detach_account(conn: psycopg.Connection, account_id: int) -> None:
    """Clear a removed account from the attempts and events that name it (its archived campaigns' results
    stay, with no account)."""
    conn.execute("UPDATE call_attempt SET account_id = NULL WHERE account_id = %s", (account_id,))
    conn.execute("UPDATE call_event SET account_id = NULL WHERE account_id = %s", (account_id,))
