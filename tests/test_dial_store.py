"""The attempt row is the at-most-once guard: the race between a worker about to send and the reaper
handing back an attempt that was never sent has exactly one winner. Real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from campaigns.secrets_box import encrypt
from campaigns.states import slot_member
from campaigns.store.attempt_marks import mark_sending
from campaigns.store.dial_store import QueuedDestination, StartedAttempt, dnc_numbers, undo_unsent_attempts
from campaigns.store.settlements import hand_back_never_sent


@pytest.fixture(autouse=True)
def _campaigns_paused_after(db: psycopg.Connection) -> Iterator[None]:
    """The campaigns made here run (the mark checks that) with destinations handed back to pending: left
    running, a later module's dispatcher tick would dial them."""
    yield
    db.execute("UPDATE campaign SET state = 'paused', state_reason = 'test ended' "
               "WHERE name = 'store' AND state = 'running'")


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
    return StartedAttempt(attempt, QueuedDestination(destination, "+12125550100", "UTC", 0, attempt))


def test_an_attempt_never_sent_is_handed_back_and_can_no_longer_be_sent(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=60)
    handed = hand_back_never_sent(db, older_than_s=15)
    assert slot_member(attempt.attempt_id) in {m for _, _, m in handed}, "its own slot is freed"
    status = db.execute(
        "SELECT status, attempts_made FROM destination WHERE id = %s", (attempt.destination.id,)
    ).fetchone()
    assert status == ("pending", 0), "the destination goes back to be dialed, the attempt does not count"
    assert mark_sending(db, [attempt]).marked == set(), "a worker waking now must not send it"


def test_an_attempt_marked_as_sending_is_never_handed_back(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=60)
    assert mark_sending(db, [attempt]).marked == {attempt.attempt_id}
    handed = hand_back_never_sent(db, older_than_s=15)
    assert slot_member(attempt.attempt_id) not in {m for _, _, m in handed}
    status = db.execute("SELECT status FROM call_attempt WHERE id = %s", (attempt.attempt_id,)).fetchone()
    assert status == ("dialing",), "it may have reached the carrier: only a callback or the lease resolves it"


def test_a_recent_unsent_attempt_is_left_to_its_worker(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=0)
    handed = hand_back_never_sent(db, older_than_s=15)
    assert slot_member(attempt.attempt_id) not in {m for _, _, m in handed}
    assert mark_sending(db, [attempt]).marked == {attempt.attempt_id}


def test_the_mark_before_each_request_refuses_a_paused_campaign_and_a_number_now_on_dnc(
    db: psycopg.Connection,
) -> None:
    paused = _committed_attempt(db, age_s=0)
    db.execute("UPDATE campaign SET state = 'paused' WHERE id = (SELECT campaign_id FROM call_attempt "
               "WHERE id = %s)", (paused.attempt_id,))
    result = mark_sending(db, [paused])
    assert (result.marked, result.not_running) == (set(), {paused.attempt_id}), "paused: no call"
    listed = _committed_attempt(db, age_s=0)
    db.execute("INSERT INTO dnc_number (number) VALUES ('+12125550100') ON CONFLICT DO NOTHING")
    try:
        result = mark_sending(db, [listed])
        assert (result.marked, result.on_dnc) == (set(), {listed.attempt_id}), "on the list now: no call"
        campaign = db.execute("SELECT campaign_id FROM call_attempt WHERE id = %s",
                              (listed.attempt_id,)).fetchone()
        assert campaign is not None
        assert dnc_numbers(db, ["+12125550100", "+12125550199"], campaign[0]) == {"+12125550100"}
    finally:
        db.execute("DELETE FROM dnc_number WHERE number = '+12125550100'")


def test_an_undo_moves_back_only_a_destination_whose_current_attempt_it_undid(db: psycopg.Connection) -> None:
    stale = _committed_attempt(db, age_s=60)
    hand_back_never_sent(db, older_than_s=15)  # the reaper took it back
    db.execute("UPDATE destination SET status = 'dialing', attempts_made = 1 WHERE id = %s",
               (stale.destination.id,))  # and another worker dialed it again
    assert undo_unsent_attempts(db, [stale], None) == 0
    row = db.execute("SELECT status, attempts_made FROM destination WHERE id = %s",
                     (stale.destination.id,)).fetchone()
    assert row == ("dialing", 1)
