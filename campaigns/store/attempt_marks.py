"""An attempt's marks around its one request, each a single statement: the text it will speak, stored when
it starts; marked as sending just before the request (with the last checks: calling window, campaign still
running, number not on a do-not-call list), noted as ambiguous when its answer never came or was a 5xx, its
ids recorded when the carrier accepted it; and the digits of an opt-out pressed during the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from campaigns.states import CampaignState
from campaigns.store.dial_store import CampaignForDial, StartedAttempt, on_dnc_sql, undo_unsent_attempts
from campaigns.windows import is_callable_now


def record_spoken_text(conn: psycopg.Connection, texts: dict[int, str]) -> None:
    """Keep on each attempt (by id) the text its call will speak, so the answer plays what results show."""
    conn.execute(
        "UPDATE call_attempt a SET spoken_text = v.text "
        "FROM unnest(%s::bigint[], %s::text[]) AS v(id, text) WHERE a.id = v.id",
        (list(texts), list(texts.values())),
    )


async def record_opt_out(conn: psycopg.AsyncConnection, *, attempt_id: int, digits: str) -> bool:
    """Mark an attempt opted out with the key pressed, once: True when this call set the mark (the caller
    then lists the number in the same transaction), False when the attempt had opted out already. The row
    lock makes a concurrent second press wait and then find the mark."""
    cur = await conn.execute(
        "UPDATE call_attempt SET opt_out_digits = %s, opted_out_at = now() "
        "WHERE id = %s AND opted_out_at IS NULL RETURNING id",
        (digits, attempt_id),
    )
    return await cur.fetchone() is not None


def note_ambiguous(conn: psycopg.Connection, attempts: list[StartedAttempt], message: str) -> None:
    """Sent with no usable answer: the call may be live. Leave it `dialing` for a callback, a status
    lookup or its evidence window (workers.housekeeping.send_evidence); one a callback already moved on is
    left as it is."""
    conn.execute(
        "UPDATE call_attempt SET error_message = %s, sent_at = coalesce(sent_at, now()) "
        "WHERE id = ANY(%s) AND status = 'dialing'",
        (message[:2000], [a.attempt_id for a in attempts]),
    )


def record_sent(conn: psycopg.Connection, rows: list[tuple[int, str | None, str | None]]) -> None:
    """Record (attempt id, request_uuid, call_uuid) of accepted calls (callbacks may be ahead of this)."""
    if not rows:
        return
    rows = sorted(rows)
    # One statement; rows locked in id order, as the event applier does, so the two never deadlock.
    conn.execute(
        """
        WITH locked AS (SELECT id FROM call_attempt WHERE id = ANY(%s) ORDER BY id FOR UPDATE)
        UPDATE call_attempt a
        SET status = CASE WHEN a.status = 'dialing' THEN 'sent' ELSE a.status END,
            request_uuid = coalesce(a.request_uuid, v.request_uuid),
            call_uuid = coalesce(a.call_uuid, v.call_uuid),
            sent_at = coalesce(a.sent_at, now())
        FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, request_uuid, call_uuid), locked
        WHERE a.id = v.id AND locked.id = v.id
        """,
        ([r[0] for r in rows], [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
    )


def lock_in_id_order(conn: psycopg.Connection, attempt_ids: list[int]) -> None:
    """Within a transaction that will write several attempts in more than one statement: lock them all
    first, in id order, as every writer of several attempts does, so that no two writers deadlock."""
    conn.execute("SELECT id FROM call_attempt WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                 (sorted(attempt_ids),))


_MARK_SENDING = f"""
WITH candidate AS (
    SELECT a.id, c.state = '{CampaignState.RUNNING.value}' AS running,
           {on_dnc_sql("d.number", "a.campaign_id")} AS on_dnc
    FROM call_attempt a JOIN destination d ON d.id = a.destination_id JOIN campaign c ON c.id = a.campaign_id
    WHERE a.id = ANY(%s) AND a.status = 'dialing' AND a.sent_at IS NULL
    ORDER BY a.id FOR UPDATE OF a
), marked AS (
    UPDATE call_attempt a SET sent_at = now() FROM candidate
    WHERE a.id = candidate.id AND candidate.running AND NOT candidate.on_dnc
)
SELECT id, running, on_dnc FROM candidate
"""


@dataclass(frozen=True)
class MarkResult:
    """What the last check before a request found: the attempts marked (send these), those whose campaign
    is no longer running or whose number is now on a do-not-call list (undo these), and by omission those
    the reaper handed back meanwhile (not ours any more: only free their slots)."""

    marked: set[int]
    not_running: set[int]
    on_dnc: set[int]


def mark_sending(conn: psycopg.Connection, attempts: list[StartedAttempt]) -> MarkResult:
    """Mark attempts as about to be sent, just before the request, if their campaign still runs and their
    number is not on a do-not-call list: the last check before a call, in the same round trip as the mark.
    An attempt without `sent_at` provably never reached the carrier, so the reaper may hand it back for
    dialing; the row lock makes the mark and that hand-back exclude each other."""
    if not attempts:
        return MarkResult(set(), set(), set())
    rows = conn.execute(_MARK_SENDING, ([a.attempt_id for a in attempts],)).fetchall()
    return MarkResult(
        marked={r[0] for r in rows if r[1] and not r[2]},
        not_running={r[0] for r in rows if not r[1]},
        on_dnc={r[0] for r in rows if r[1] and r[2]},
    )


@dataclass(frozen=True)
class LastCheck:
    """The outcome of the checks just before a request: send `sending`; free the slots of `not_sent`
    (refused ones were undone, `handed_back` destinations moved back; the rest the reaper took back)."""

    sending: list[StartedAttempt]
    not_sent: list[StartedAttempt]
    handed_back: int


def last_check(conn: psycopg.Connection, campaign: CampaignForDial, started: list[StartedAttempt],
               now: datetime) -> LastCheck:
    """Invariant 5, per request: the calling window (pure), then campaign state and DNC in the mark's own
    round trip. Paused, on a list now, or out of hours: no call and no attempt; the destination goes back
    to be screened again when next due. An attempt the reaper handed back meanwhile (this thread woke very
    late) is not ours any more: neither sent nor undone."""
    in_window = [
        a for a in started
        if is_callable_now(campaign.window, campaign.timezone_override or a.destination.timezone, now)
    ]
    result = mark_sending(conn, in_window)
    refused = [a for a in started if a.attempt_id not in result.marked and (
        a not in in_window or a.attempt_id in result.not_running or a.attempt_id in result.on_dnc)]
    handed_back = undo_unsent_attempts(conn, refused, None, back_to="pending")
    return LastCheck(sending=[a for a in in_window if a.attempt_id in result.marked],
                     not_sent=[a for a in started if a.attempt_id not in result.marked],
                     handed_back=handed_back)
