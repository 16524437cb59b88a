"""Every non-final state has an owner and a deadline, and the owner acts at the deadline whatever else the
campaign holds: one test per row of the owner table (campaigns.states), each in a campaign where nothing
else is due. Real Postgres and Redis; the dispatcher and reaper passes are called directly, with the
deadline already past (brought forward in the rows, not waited for).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.states import ATTEMPT_OWNERS, DESTINATION_OWNERS, AttemptStatus, DestinationStatus, slot_member
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from workers.dispatch.dispatcher import dispatch_tick
from workers.housekeeping.reaper import reap_expired_attempts
from workers.ratelimit import Budgets

_blocks = iter(range(10_000, 99_999, 10))


@dataclass
class Lone:
    """A running campaign of one destination (so nothing else is due) on a carrier that refuses
    connections (so no status lookup can answer)."""

    conn: psycopg.Connection
    budgets: Budgets
    account_id: int
    campaign_id: int
    destination_id: int

    def destination(self) -> tuple[str, int]:
        row = self.conn.execute("SELECT status, attempts_made FROM destination WHERE id = %s",
                                (self.destination_id,)).fetchone()
        assert row is not None
        return row[0], row[1]

    def set_destination(self, status: str, attempts_made: int = 0,
                        next_attempt_in_s: float | None = None) -> None:
        self.conn.execute(
            "UPDATE destination SET status = %s, attempts_made = %s, next_attempt_at = CASE WHEN %s::float "
            "IS NULL THEN NULL ELSE now() + make_interval(secs => %s::float) END WHERE id = %s",
            (status, attempts_made, next_attempt_in_s, next_attempt_in_s, self.destination_id))

    def attempt(self, status: str, *, age_s: float, sent_age_s: float | None, lease_in_s: float,
                attempt_no: int = 1, **ids: Any) -> int:
        row = self.conn.execute(
            "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, "
            "status, created_at, sent_at, lease_expires_at, request_uuid, call_uuid) "
            "VALUES (%s, %s, %s, %s, %s, %s, now() - make_interval(secs => %s), "
            "CASE WHEN %s::float IS NULL THEN NULL ELSE now() - make_interval(secs => %s::float) END, "
            "now() + make_interval(secs => %s), %s, %s) "
            "RETURNING id",
            (self.destination_id, self.campaign_id, self.account_id, attempt_no, uuid.uuid4(), status, age_s,
             sent_age_s, sent_age_s, lease_in_s, ids.get("request_uuid"), ids.get("call_uuid"))).fetchone()
        assert row is not None
        self.budgets.acquire(self.account_id, self.campaign_id, [slot_member(row[0])], 100, None, 3600)
        return int(row[0])

    def attempt_status(self, attempt_id: int) -> str | None:
        row = self.conn.execute("SELECT status FROM call_attempt WHERE id = %s", (attempt_id,)).fetchone()
        return row[0] if row else None

    def holds_slot(self, attempt_id: int) -> bool:
        from workers import redis_keys

        return self.budgets.client.zscore(redis_keys.account_slots(self.account_id),
                                          slot_member(attempt_id)) is not None

    def dispatch(self) -> list[int]:
        enqueued: list[int] = []
        dispatch_tick(self.conn, self.budgets, lambda _cid, ids, _account: enqueued.extend(ids))
        return enqueued

    def reap(self) -> Any:
        with httpx.Client(timeout=2) as client:
            return reap_expired_attempts(self.conn, client, self.budgets)


@pytest.fixture()
def lone(database_url: str, redis_client: Any) -> Iterator[Lone]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        tag = uuid.uuid4().hex[:8]
        account_id = add_account(conn, name=f"lone-{tag}", provider="plivo", auth_id=f"MALONE{tag}",
                                 auth_token="tok", cps=20, max_concurrent=100, base_url="http://127.0.0.1:9")
        campaign_id = load_campaign(f"lone-{tag}", numbers(1, start=next(_blocks), area="347"))
        prepare_and_start(conn, campaign_id, account_id,
                          provider_options={"ring_timeout": 20, "time_limit": 30}, retry_policy={})
        row = conn.execute("SELECT id FROM destination WHERE campaign_id = %s", (campaign_id,)).fetchone()
        assert row is not None
        yield Lone(conn, Budgets(redis_client), account_id, campaign_id, row[0])
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s AND state = 'running'",
                     (campaign_id,))


D, A = DestinationStatus, AttemptStatus


def test_the_owner_table_names_every_row_tested_here() -> None:
    assert set(DESTINATION_OWNERS) == {D.PENDING, D.RETRY_WAIT, D.QUEUED, D.DIALING, D.RINGING, D.ANSWERED}
    assert set(ATTEMPT_OWNERS) == {A.DIALING, A.SENT, A.RINGING, A.ANSWERED}


@pytest.mark.parametrize("status", ["pending", "retry_wait"])
def test_a_due_waiting_destination_is_claimed_by_the_dispatcher(lone: Lone, status: str) -> None:
    lone.set_destination(status, 1 if status == "retry_wait" else 0, next_attempt_in_s=-1)
    assert lone.dispatch() == [lone.destination_id]
    assert lone.destination()[0] == "queued"


def test_a_queued_destination_whose_claim_lease_ran_out_is_claimed_again(lone: Lone) -> None:
    lone.set_destination("queued", next_attempt_in_s=-60)  # its chunk task died; nothing else is due
    assert lone.dispatch() == [lone.destination_id]


def test_a_queued_destination_with_no_lease_at_all_is_claimed_again(lone: Lone) -> None:
    lone.set_destination("queued")
    assert lone.dispatch() == [lone.destination_id]


def test_waiting_destinations_expire_at_the_campaigns_end_and_it_completes(lone: Lone) -> None:
    lone.set_destination("queued", next_attempt_in_s=20)  # claimed by a live task, not yet due
    lone.conn.execute("UPDATE campaign SET end_at = now() - interval '1 second' WHERE id = %s",
                      (lone.campaign_id,))
    lone.dispatch()
    assert lone.destination()[0] == "expired"
    lone.dispatch()
    state = lone.conn.execute("SELECT state FROM campaign WHERE id = %s", (lone.campaign_id,)).fetchone()
    assert state == ("completed",)


def test_an_attempt_committed_but_never_sent_is_handed_back_after_the_grace(lone: Lone) -> None:
    lone.set_destination("dialing", 1)
    attempt = lone.attempt("dialing", age_s=60, sent_age_s=None, lease_in_s=600)
    assert lone.reap().never_sent == 1
    assert lone.destination() == ("pending", 0) and lone.attempt_status(attempt) is None
    assert not lone.holds_slot(attempt)


def test_a_send_never_answered_with_no_sign_of_its_call_is_retried_after_its_evidence_window(
    lone: Lone,
) -> None:
    lone.set_destination("dialing", 1)
    attempt = lone.attempt("dialing", age_s=200, sent_age_s=120, lease_in_s=600)  # window: 20 s + 60 s
    assert lone.reap().never_placed == 1
    assert lone.destination()[0] == "retry_wait" and lone.attempt_status(attempt) == "unknown"
    assert not lone.holds_slot(attempt)


def test_a_send_never_answered_ends_unknown_when_the_campaign_says_so(lone: Lone) -> None:
    lone.conn.execute("UPDATE campaign SET provider_options = provider_options || '{\"unsettled_send\": "
                      "\"unknown\"}' WHERE id = %s", (lone.campaign_id,))
    lone.set_destination("dialing", 1)
    lone.attempt("dialing", age_s=200, sent_age_s=120, lease_in_s=600)
    assert lone.reap().never_placed == 1
    assert lone.destination()[0] == "unknown"


def test_a_send_never_answered_is_left_alone_inside_its_evidence_window(lone: Lone) -> None:
    lone.set_destination("dialing", 1)
    attempt = lone.attempt("dialing", age_s=70, sent_age_s=60, lease_in_s=600)  # window: 80 s
    assert lone.reap().never_placed == 0
    assert lone.destination()[0] == "dialing" and lone.attempt_status(attempt) == "dialing"
    assert lone.holds_slot(attempt)


def test_a_send_never_answered_but_with_a_sign_of_its_call_is_settled_as_placed(lone: Lone) -> None:
    lone.set_destination("dialing", 1)
    attempt = lone.attempt("dialing", age_s=200, sent_age_s=120, lease_in_s=600)
    lone.conn.execute(
        "INSERT INTO call_event (provider, account_id, event_key, kind, payload, applied_at, attempt_id) "
        "VALUES ('plivo', %s, %s, 'status', '{}', now(), %s)", (lone.account_id, uuid.uuid4().hex, attempt))
    report = lone.reap()
    assert (report.settled_placed, report.never_placed) == (1, 0)
    assert lone.attempt_status(attempt) == "sent" and lone.destination()[0] == "dialing"
    assert lone.holds_slot(attempt), "a placed call keeps its slot until its end or its lease"


@pytest.mark.parametrize("status", ["sent", "ringing", "answered"])
def test_an_open_attempt_past_its_lease_is_marked_unknown_by_the_reaper(lone: Lone, status: str) -> None:
    dest_status = {"sent": "dialing"}.get(status, status)
    lone.set_destination(dest_status, 1)
    attempt = lone.attempt(status, age_s=900, sent_age_s=899, lease_in_s=-1, request_uuid=uuid.uuid4().hex)
    assert lone.reap().unknown == 1
    assert lone.attempt_status(attempt) == "unknown" and lone.destination()[0] == "unknown"
    assert not lone.holds_slot(attempt)


@pytest.mark.parametrize("status", ["dialing", "ringing", "answered"])
def test_a_live_destination_whose_attempt_is_final_is_moved_on_by_the_reaper(lone: Lone, status: str) -> None:
    lone.set_destination(status, 1)
    lone.conn.execute("UPDATE destination SET updated_at = now() - interval '10 minutes' WHERE id = %s",
                      (lone.destination_id,))
    attempt = lone.attempt("completed", age_s=900, sent_age_s=899, lease_in_s=-1)
    lone.conn.execute("UPDATE call_attempt SET outcome = 'answered' WHERE id = %s", (attempt,))
    assert lone.reap().orphaned == 1
    assert lone.destination()[0] == "done"


def test_a_live_destination_whose_attempt_is_missing_goes_back_to_be_dialed(lone: Lone) -> None:
    lone.set_destination("dialing", 1)
    lone.conn.execute("UPDATE destination SET updated_at = now() - interval '10 minutes' WHERE id = %s",
                      (lone.destination_id,))
    assert lone.reap().orphaned == 1
    assert lone.destination() == ("pending", 0), "no attempt row means no request was sent (invariant 1)"


def test_a_hangup_that_beats_the_ambiguous_answer_settles_the_attempt_and_the_5xx_changes_nothing(
    lone: Lone,
) -> None:
    from psycopg.types.json import Jsonb

    from campaigns.store.attempt_marks import note_ambiguous
    from campaigns.store.dial_store import QueuedDestination, StartedAttempt
    from workers.callbacks.applier import apply_events, by_ids

    lone.set_destination("dialing", 1)
    attempt = lone.attempt("dialing", age_s=1, sent_age_s=1, lease_in_s=600)
    batch, number = lone.conn.execute(
        "SELECT a.batch_id, d.number FROM call_attempt a JOIN destination d ON d.id = a.destination_id "
        "WHERE a.id = %s", (attempt,)).fetchone()
    parsed = {"outcome": "answered", "provider_status": "completed", "duration": 12}
    event = lone.conn.execute(
        "INSERT INTO call_event (provider, account_id, event_key, kind, batch_id, call_uuid, destination, "
        "payload) VALUES ('plivo', %s, %s, 'hangup', %s, %s, %s, %s) RETURNING id",
        (lone.account_id, uuid.uuid4().hex, batch, uuid.uuid4().hex, number, Jsonb({"parsed": parsed}))
    ).fetchone()[0]
    freed: list[str] = []
    apply_events(lone.conn, by_ids([event]), 1, (lambda _a, _c, members: freed.extend(members),
                                                 lambda *_: None))
    # Then the create request's 502 comes back: ambiguous, noted only on an attempt still `dialing`.
    sent = StartedAttempt(attempt, QueuedDestination(lone.destination_id, number, "UTC", 0, attempt))
    note_ambiguous(lone.conn, [sent], "ambiguous send: 502")
    row = lone.conn.execute("SELECT status, outcome, error_message FROM call_attempt WHERE id = %s",
                            (attempt,)).fetchone()
    assert row == ("completed", "answered", None), "the first call's own hangup is its result"
    assert lone.destination()[0] == "done" and freed == [slot_member(attempt)]
    assert lone.reap().never_placed == 0
