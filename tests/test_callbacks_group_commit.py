"""Callbacks are applied in the group commit that stores them (campaigns.store.event_store.EventWriter with
workers.callbacks.apply_on_store): a callback is applied by the time it is acknowledged; a batch holding a
duplicate and an event for a call we do not know yet stores each event once and applies what it can; an
event whose attempt's ids are recorded later is applied then; and a batch that cannot be applied (a poison
value, an attempt locked too long) is still stored at once, for the applier. Real Postgres and a real
`dialer api` process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from campaigns.accounts import add_account
from campaigns.db import SESSION_OPTIONS
from campaigns.store.attempt_marks import record_sent
from campaigns.store.event_store import APPLY_LOCK_WAIT, EventRow, EventWriter, distinct_rows
from tests.engine_harness import Stack, running_stack
from tests.results_helpers import plivo_form, plivo_signed, signed_url
from workers.callbacks.applier import apply_events_by_id, apply_events_for_ids
from workers.callbacks.apply_on_store import apply_on_store
from workers.callbacks.batch_moves import BatchEvent, MatchedRows, decide_moves
from workers.callbacks.transitions import AttemptRow, DestinationRow

pytestmark = pytest.mark.timeout(120)

TOKEN = "group-commit-token"
NO_SLOTS = (lambda *a: None, lambda *a: None)


@pytest.fixture(scope="module")
def account(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        account_id = add_account(conn, name=f"group-{uuid.uuid4().hex[:6]}", provider="plivo",
                                 auth_id="MAGROUP", auth_token=TOKEN, cps=10, max_concurrent=10,
                                 base_url="http://127.0.0.1:9")
        conn.commit()
    return account_id


@pytest.fixture()
def writer(database_url: str) -> Iterator[EventWriter]:
    """The API's writer with its applier, its batches written here directly (no thread, no event loop)."""
    writer = EventWriter(database_url, {"autocommit": True, "options": SESSION_OPTIONS}, apply=apply_on_store)
    writer.pool.open(wait=True)
    yield writer
    writer.pool.close()


def _attempt(conn: psycopg.Connection, account_id: int, number: str, call: str | None,
             status: str = "sent") -> int:
    """A running campaign's destination in `dialing` with one attempt (its ids recorded unless None)."""
    campaign = conn.execute(
        "INSERT INTO campaign (name, account_id, caller_id, state) VALUES ('group', %s, '+14155550100', "
        "'running') RETURNING id", (account_id,)).fetchone()[0]
    destination = conn.execute(
        "INSERT INTO destination (campaign_id, line_no, number, timezone, status, attempts_made) "
        "VALUES (%s, 1, %s, 'America/New_York', 'dialing', 1) RETURNING id", (campaign, number)).fetchone()[0]
    attempt = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, "
        "request_uuid, call_uuid, status, lease_expires_at) VALUES (%s, %s, %s, 1, %s, %s, %s, %s, "
        "now() + interval '1 hour') RETURNING id",
        (destination, campaign, account_id, uuid.uuid4(), call, call, status)).fetchone()[0]
    conn.commit()
    return int(attempt)


def _event(account_id: int, call: str, number: str, kind: str = "hangup", duration: int = 12,
           key: str | None = None) -> EventRow:
    parsed: dict[str, Any] = {"provider_status": "completed" if kind == "hangup" else "ringing"}
    if kind == "hangup":
        parsed.update(outcome="answered", duration=duration, billed_duration=60,
                      end_at="2025-01-01T10:00:30+00:00", answer_at="2025-01-01T10:00:05+00:00")
    else:
        parsed.update(ring_at="2025-01-01T10:00:01+00:00")
    return EventRow(provider="plivo", account_id=account_id, event_key=key or f"{kind}:{call}", kind=kind,
                    batch_id=None, request_uuid=call, call_uuid=call, destination=number,
                    payload={"raw": {"CallUUID": call}, "parsed": parsed, "source": "callback"})


def _stored(conn: psycopg.Connection, call: str) -> list[tuple[Any, ...]]:
    """(kind, attempt, applied) of each stored event of a call."""
    return conn.execute("SELECT kind, attempt_id, applied_at IS NOT NULL FROM call_event "
                        "WHERE call_uuid = %s ORDER BY id", (call,)).fetchall()


def _attempt_state(conn: psycopg.Connection, attempt: int) -> tuple[Any, ...]:
    row = conn.execute("SELECT a.status, a.outcome, a.ring_at IS NOT NULL, d.status FROM call_attempt a "
                       "JOIN destination d ON d.id = a.destination_id WHERE a.id = %s", (attempt,)).fetchone()
    assert row is not None
    return tuple(row)


# --- through the API --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(database_url: str, redis_client: Any) -> Iterator[Stack]:
    with running_stack(workers=0, beat=False) as running:
        yield running


def test_a_callback_is_applied_in_the_transaction_that_stores_it_before_it_is_answered(
        stack: Stack, account: int, database_url: str) -> None:
    call = str(uuid.uuid4())
    with psycopg.connect(database_url) as conn:
        attempt = _attempt(conn, account, "+12125550170", call)
        url = signed_url(stack.api_url, "plivo", account, "hangup")
        body, headers = plivo_signed(url, plivo_form(request_uuid=call, call_uuid=call, to="+12125550170"),
                                     TOKEN)
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        # Read at once: applied in the very transaction that stored it (one commit, one timestamp).
        row = conn.execute("SELECT attempt_id, applied_at = received_at FROM call_event WHERE call_uuid = %s",
                           (call,)).fetchone()
        assert row == (attempt, True)
        assert _attempt_state(conn, attempt) == ("completed", "answered", True, "done")


# --- the writer's batches -----------------------------------------------------------------------------

def test_a_batch_with_duplicates_and_an_unknown_call_stores_each_event_once_and_applies_the_known(
        writer: EventWriter, account: int, database_url: str) -> None:
    call, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:
        attempt = _attempt(conn, account, "+12125550171", call)
        ring = _event(account, call, "+12125550171", kind="ring")
        assert writer.write_batch([ring]).unapplied_ids == []
        hangup = _event(account, call, "+12125550171")
        # The ring again (a carrier's retry of a stored event), the hangup twice, and a call we never made.
        written = writer.write_batch([ring, hangup, hangup, _event(account, unknown, "+12125550172")])
        assert written.unapplied_ids == []  # applied in its commit; the unknown one waits for its ids
        assert _stored(conn, call) == [("ring", attempt, True), ("hangup", attempt, True)]
        assert _stored(conn, unknown) == [("hangup", None, False)]
        assert _attempt_state(conn, attempt) == ("completed", "answered", True, "done")


def test_an_event_whose_attempt_is_recorded_later_is_applied_when_its_ids_are(
        writer: EventWriter, account: int, database_url: str) -> None:
    call = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:
        attempt = _attempt(conn, account, "+12125550173", None, status="dialing")  # its answer not read yet
        writer.write_batch([_event(account, call, "+12125550173")])
        assert _stored(conn, call) == [("hangup", None, False)]
        assert _attempt_state(conn, attempt)[0] == "dialing"
        record_sent(conn, [(attempt, call, call)])  # what the dial path does, then:
        assert apply_events_for_ids(conn, [call]).applied == 1
        assert _stored(conn, call) == [("hangup", attempt, True)]
        assert _attempt_state(conn, attempt) == ("completed", "answered", False, "done")


def test_a_batch_that_cannot_be_applied_is_stored_at_once_and_left_to_the_applier(
        writer: EventWriter, account: int, database_url: str) -> None:
    good, poison = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn:
        attempts = [_attempt(conn, account, "+12125550174", good),
                    _attempt(conn, account, "+12125550175", poison)]
        # A duration beyond the attempt's INTEGER column: the batch's write fails, its storing must not.
        written = writer.write_batch([_event(account, good, "+12125550174"),
                                      _event(account, poison, "+12125550175", duration=2**40)])
        assert written.moves is None and len(written.unapplied_ids) == 2
        assert _stored(conn, good) == _stored(conn, poison) == [("hangup", None, False)]
        report = apply_events_by_id(conn, written.unapplied_ids, NO_SLOTS)  # the applier thread's step
        assert report.applied == 1
        assert _attempt_state(conn, attempts[0])[0] == "completed"
        assert _attempt_state(conn, attempts[1])[0] == "sent"
        reason = conn.execute("SELECT rejected_reason FROM call_event WHERE call_uuid = %s",
                              (poison,)).fetchone()
        assert reason is not None and "out of range" in reason[0]


def test_an_attempt_locked_past_the_cap_delays_storing_by_the_cap_only(
        writer: EventWriter, account: int, database_url: str) -> None:
    call = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn, psycopg.connect(database_url) as holder:
        attempt = _attempt(conn, account, "+12125550176", call)
        holder.execute("SELECT 1 FROM call_attempt WHERE id = %s FOR UPDATE", (attempt,))  # held open
        started = time.monotonic()
        written = writer.write_batch([_event(account, call, "+12125550176")])
        waited = time.monotonic() - started
        cap_s = int(APPLY_LOCK_WAIT.removesuffix("ms")) / 1000
        assert cap_s <= waited < cap_s + 1.5
        assert written.moves is None and _stored(conn, call) == [("hangup", None, False)]
        holder.rollback()
        assert apply_events_by_id(conn, written.unapplied_ids, NO_SLOTS).applied == 1
        assert _attempt_state(conn, attempt)[0] == "completed"


# --- pure ------------------------------------------------------------------------------------------------

def test_two_events_of_one_call_in_one_batch_move_it_as_one_after_the_other() -> None:
    attempt = AttemptRow(id=7, destination_id=70, campaign_id=1, account_id=1, attempt_no=1, status="sent")
    locked = MatchedRows(matched={1: 7, 2: 7, 3: 7}, attempts={7: attempt},
                         destinations={70: DestinationRow(70, "dialing", 1)})
    ring = {"provider_status": "ringing", "ring_at": "2025-01-01T10:00:01+00:00"}
    hangup = {"provider_status": "completed", "outcome": "busy"}
    events = [BatchEvent(1, "ring", "r", "c", ring), BatchEvent(2, "hangup", "r", "c", hangup),
              BatchEvent(3, "ring", "r", "c", ring), BatchEvent(4, "hangup", "x", "y", hangup)]
    moves = decide_moves(events, locked, datetime.now(UTC))
    assert moves.applied == [(1, 7), (2, 7), (3, 7)] and moves.unmatched == 1 and moves.finals == 1
    assert [(m[0], m[1]) for m in moves.attempts] == [(7, "completed")]  # the late ring changed nothing
    assert [d[:3] for d in moves.destinations] == [(70, "retry_wait", "busy")]  # by the default policy
    assert [a for a, _c, _m in moves.effects.release] == [1]  # its slot freed once


def test_a_batch_keeps_the_first_of_each_event_and_writes_keys_in_one_order() -> None:
    rows = [_event(1, "b", "+1"), _event(1, "a", "+1"), _event(1, "b", "+1", duration=99)]
    distinct = distinct_rows(rows)
    assert [r.event_key for r in distinct] == ["hangup:a", "hangup:b"]
    assert distinct[1].payload["parsed"]["duration"] == 12
