"""Break 1 of issue 9 in the state where it lives: destinations `queued` by a worker that died, their lease
run out, and nothing else due in the campaign. The dispatcher must claim them again, or the campaign never
completes. Real Postgres and Redis; the dispatcher pass is called directly."""

from __future__ import annotations

import uuid

import psycopg

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from workers.dispatch.dispatcher import dispatch_tick
from workers.ratelimit import Budgets


def test_expired_queued_leases_are_reclaimed_when_nothing_else_is_due(database_url, redis_client) -> None:
    with psycopg.connect(database_url) as conn:
        account_id = add_account(conn, name=f"strand-{uuid.uuid4().hex[:6]}", provider="plivo",
                                 auth_id="MASTRAND", auth_token="tok", cps=20, max_concurrent=100,
                                 base_url="http://127.0.0.1:9")
        campaign_id = load_campaign("stranded", numbers(5, area="646"))
        prepare_and_start(conn, campaign_id, account_id)
        # A dead worker's chunk: claimed, its 30 s lease long gone; every other destination is final.
        conn.execute("UPDATE destination SET status = 'queued', next_attempt_at = now() - interval '60 s' "
                     "WHERE campaign_id = %s AND line_no <= 3", (campaign_id,))
        conn.execute("UPDATE destination SET status = 'done', next_attempt_at = NULL "
                     "WHERE campaign_id = %s AND status = 'pending'", (campaign_id,))
        conn.commit()
        enqueued: list[int] = []
        conn.autocommit = True
        dispatch_tick(conn, Budgets(redis_client), lambda _cid, ids, _account: enqueued.extend(ids))
        stranded = conn.execute("SELECT id FROM destination WHERE campaign_id = %s AND status = 'queued'",
                                (campaign_id,)).fetchall()
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
    assert sorted(r[0] for r in stranded) == sorted(enqueued) and len(enqueued) == 2
