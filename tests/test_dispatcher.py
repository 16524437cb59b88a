"""The dispatcher tick, in process against real Postgres and Redis: one account that cannot be used
(its token no longer decrypts) pauses its own campaigns with a reason and never stops the others."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from campaigns.accounts import add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from workers.dispatch.dispatcher import dispatch_tick
from workers.ratelimit.process_budgets import get_budgets


def _account(conn: psycopg.Connection, name: str) -> int:
    account_id = add_account(
        conn,
        name=name,
        provider="tryvox",
        auth_id="acct",
        auth_token="tvx_sk_test_x",
        cps=10,
        max_concurrent=50,
        base_url="http://127.0.0.1:9",
    )
    conn.commit()
    return account_id


def test_an_unusable_account_pauses_its_campaigns_and_the_others_are_dispatched(
    database_url: str, redis_client: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    with psycopg.connect(database_url) as conn:
        # A tick dispatches every running campaign of the database: only this test's may run during it.
        conn.execute("UPDATE campaign SET state = 'paused', state_reason = 'paused for test_dispatcher' "
                     "WHERE state = 'running'")
        conn.commit()
        broken = _account(conn, f"broken-{tag}")
        healthy = _account(conn, f"healthy-{tag}")
        conn.execute(
            "UPDATE provider_account SET auth_token_encrypted = 'not-a-fernet-token' WHERE id = %s", (broken,)
        )
        conn.commit()
        broken_campaign = load_campaign(f"broken-{tag}", numbers(5, start=100))
        healthy_campaign = load_campaign(f"healthy-{tag}", numbers(5, start=200))
        prepare_and_start(conn, broken_campaign, broken)
        prepare_and_start(conn, healthy_campaign, healthy)
        enqueued: list[tuple[int, list[int]]] = []
        try:
            report = dispatch_tick(conn, get_budgets(),
                                   lambda cid, ids, _account: enqueued.append((cid, ids)))
            state = conn.execute(
                "SELECT state, state_reason FROM campaign WHERE id = %s", (broken_campaign,)
            ).fetchone()
        finally:
            conn.execute(
                "UPDATE campaign SET state = 'paused' WHERE id = ANY(%s) AND state = 'running'",
                ([broken_campaign, healthy_campaign],),
            )
            conn.commit()
    assert state is not None and state[0] == "paused"
    assert "DIALER_SECRET_KEY" in state[1] and "dialer account update" in state[1]
    assert report.paused == 1
    assert {cid for cid, _ in enqueued} == {healthy_campaign}
    assert sum(len(ids) for _, ids in enqueued) == 5
