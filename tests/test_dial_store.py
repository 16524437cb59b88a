"""The attempt row is the at-most-once guard: the race between a worker about to send and the reaper
handing back an attempt that was never sent has exactly one winner. Real Postgres."""

from __future__ import annotations

import uuid

import psycopg

from campaigns.secrets_box import encrypt
from workers.dial_store import QueuedDestination, StartedAttempt, hand_back_never_sent, mark_sending


def _committed_attempt(conn: psycopg.Connection, age_s: int) -> StartedAttempt:
    account = conn.execute(
        "INSERT INTO provider_account (name, provider, auth_id, auth_token_encrypted, base_url, cps, "
        "max_concurrent) VALUES (%s, 'plivo', 'MA', %s, 'http://127.0.0.1:9', 1, 1) RETURNING id",
        (f"store-{uuid.uuid4().hex[:8]}", encrypt("token")),
    ).fetchone()[0]
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, state) VALUES ('store', %s, 'running') RETURNING id",
        (account,),
    ).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 2, '+12125550100', 'UTC', 'dialing', 1) RETURNING id",
        (campaign,),
    ).fetchone()[0]
    attempt = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, status, created_at, "
        "lease_expires_at) VALUES (%s, %s, %s, 1, 'dialing', now() - make_interval(secs => %s), "
        "now() + interval '1 hour') RETURNING id",
        (destination, campaign, account, age_s),
    ).fetchone()[0]
    return StartedAttempt(attempt, QueuedDestination(destination, "+12125550100", "UTC", 0))


def test_an_attempt_never_sent_is_handed_back_and_can_no_longer_be_sent(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=60)
    handed = hand_back_never_sent(db, older_than_s=15)
    assert (attempt.destination.id, 1) in {(int(m.split(":")[0]), int(m.split(":")[1])) for _, _, m in handed}
    status = db.execute(
        "SELECT status, attempts_made FROM destination WHERE id = %s", (attempt.destination.id,)
    ).fetchone()
    assert status == ("pending", 0), "the destination goes back to be dialed, the attempt does not count"
    assert mark_sending(db, [attempt]) == set(), "a worker waking now must not send it"


def test_an_attempt_marked_as_sending_is_never_handed_back(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=60)
    assert mark_sending(db, [attempt]) == {attempt.attempt_id}
    handed = hand_back_never_sent(db, older_than_s=15)
    assert f"{attempt.destination.id}:1" not in {m for _, _, m in handed}
    status = db.execute("SELECT status FROM call_attempt WHERE id = %s", (attempt.attempt_id,)).fetchone()
    assert status == ("dialing",), "it may have reached the carrier: only a callback or the lease resolves it"


def test_a_recent_unsent_attempt_is_left_to_its_worker(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=0)
    handed = hand_back_never_sent(db, older_than_s=15)
    assert f"{attempt.destination.id}:1" not in {m for _, _, m in handed}
    assert mark_sending(db, [attempt]) == {attempt.attempt_id}
