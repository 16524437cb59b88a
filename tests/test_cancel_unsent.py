"""Cancel and the at-most-once guard: an attempt committed but not yet marked as sending is undone by
cancel (so no new call leaves), one already marked is left to its callback, and one a dead worker left in a
cancelled campaign is cancelled rather than handed back. Real Postgres."""

from __future__ import annotations

import psycopg

from campaigns.control import cancel
from campaigns.store.attempt_marks import mark_sending
from campaigns.store.settlements import hand_back_never_sent
from tests.test_dial_store import _committed_attempt


def _destination(db: psycopg.Connection, destination_id: int) -> tuple[str, int]:
    row = db.execute("SELECT status, attempts_made FROM destination WHERE id = %s",
                     (destination_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def _campaign_of(db: psycopg.Connection, attempt_id: int) -> int:
    row = db.execute("SELECT campaign_id FROM call_attempt WHERE id = %s", (attempt_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_cancel_undoes_an_attempt_not_yet_sent_so_its_worker_cannot_send_it(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=0)
    assert cancel(db, _campaign_of(db, attempt.attempt_id)) == 1
    assert _destination(db, attempt.destination.id) == ("cancelled", 0)
    assert mark_sending(db, [attempt]).marked == set(), "the worker waking now finds nothing to send"


def test_cancel_leaves_a_call_already_sending_to_its_callback(db: psycopg.Connection) -> None:
    attempt = _committed_attempt(db, age_s=0)
    assert mark_sending(db, [attempt]).marked == {attempt.attempt_id}
    assert cancel(db, _campaign_of(db, attempt.attempt_id)) == 0
    assert _destination(db, attempt.destination.id) == ("dialing", 1)


def test_a_dead_workers_unsent_attempt_in_a_cancelled_campaign_is_cancelled_not_handed_back(
    db: psycopg.Connection,
) -> None:
    attempt = _committed_attempt(db, age_s=60)
    campaign_id = _campaign_of(db, attempt.attempt_id)
    db.execute("UPDATE campaign SET state = 'cancelled' WHERE id = %s", (campaign_id,))
    hand_back_never_sent(db, older_than_s=15)
    assert _destination(db, attempt.destination.id) == ("cancelled", 0)
