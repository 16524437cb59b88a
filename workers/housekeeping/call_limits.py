"""Ring timeout and time limit for carriers whose call creation takes neither (VoIPbin): the dialer ends the
calls itself through the carrier's hang-up API.

Owner: this module's pass (the beat task workers.tasks.enforce_call_limits). Deadline: a Redis sorted set
holds one entry per provider request (its batch id), scored by the next moment one of its calls reaches a
limit (put there first by workers.dialing.limit_checks, at the ring timeout after the send); there is one
scheduled check per request, never a poll per call. At a due request the pass hangs up
each open call past its limit (not answered and sent more than the ring timeout ago; answered more than the
time limit ago) and schedules the request again at its next deadline while any call of it is open. A call
asked to end whose final event has not come yet is asked again after RECHECK_S. If Redis loses the set, the
reaper still closes the attempts at their lease, and the carrier's own limits (VoIPbin: a 60 s dial, a 1 h
call) end the calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import psycopg
import redis

from campaigns.accounts import load_account
from campaigns.call_options import ring_timeout, time_limit
from campaigns.states import OPEN_ATTEMPT, AttemptStatus, sql_in
from workers import redis_keys
from workers.providers.errors import ProviderError
from workers.providers.registry import adapter_for

log = logging.getLogger(__name__)

RECHECK_S = 5.0  # a call still open after its hang-up (or with no id to name it by yet) is looked at again
DUE_PAGE = 100  # requests taken per pass

OPEN_CALLS = f"""
SELECT a.id, a.account_id, a.status, a.request_uuid, a.call_uuid, a.sent_at, a.answer_at, c.provider_options
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id
WHERE a.batch_id = %s AND {sql_in("a.status", OPEN_ATTEMPT)}"""


@dataclass(frozen=True)
class OpenCall:
    """One open attempt of a request, as the limits see it."""

    attempt_id: int
    answered: bool
    sent_at: datetime | None
    answer_at: datetime | None
    request_uuid: str | None = None
    call_uuid: str | None = None


@dataclass(frozen=True)
class CallLimits:
    ring_timeout_s: int
    time_limit_s: int


def call_deadline(call: OpenCall, limits: CallLimits) -> datetime | None:
    """When the call must have ended: its answer plus the time limit, else its send plus the ring timeout
    (counted from the send, so it rings no longer than that); None before it was sent."""
    if call.answer_at is not None:
        return call.answer_at + timedelta(seconds=limits.time_limit_s)
    if call.sent_at is None:
        return None
    if call.answered:  # answered, its answer time not known: the longest the call may have had
        return call.sent_at + timedelta(seconds=limits.ring_timeout_s + limits.time_limit_s)
    return call.sent_at + timedelta(seconds=limits.ring_timeout_s)


@dataclass(frozen=True)
class LimitCheck:
    """What one check of a request decides: the calls to hang up now, and when to look again (None: no call
    of it is open)."""

    overdue: list[OpenCall]
    next_at: datetime | None


def check_request(calls: Iterable[OpenCall], limits: CallLimits, now: datetime) -> LimitCheck:
    """The open calls of one request past their limit, and the next deadline of the rest (pure)."""
    overdue: list[OpenCall] = []
    next_at: list[datetime] = []
    recheck = now + timedelta(seconds=RECHECK_S)
    for call in calls:
        deadline = call_deadline(call, limits)
        if deadline is None:
            next_at.append(recheck)
        elif deadline <= now:
            overdue.append(call)
            next_at.append(recheck)
        else:
            next_at.append(deadline)
    return LimitCheck(overdue, min(next_at, default=None))


def schedule_check(client: redis.Redis, batch_id: uuid.UUID | str, at_epoch: float) -> None:
    """Look at the request at `at_epoch`, or sooner if it is already due sooner (LT still adds a new one)."""
    client.zadd(redis_keys.call_limit_checks(), {str(batch_id): at_epoch}, lt=True)


def take_due(client: redis.Redis, now_epoch: float, limit: int = DUE_PAGE) -> list[str]:
    """The requests due by now, each taken by exactly one pass (ZREM decides between two)."""
    key = redis_keys.call_limit_checks()
    due = [m.decode() if isinstance(m, bytes) else str(m)
           for m in client.zrangebyscore(key, "-inf", now_epoch, start=0, num=limit)]
    if not due:
        return []
    pipe = client.pipeline(transaction=False)
    for member in due:
        pipe.zrem(key, member)
    return [member for member, removed in zip(due, pipe.execute(), strict=True) if removed]


@dataclass
class LimitsReport:
    checked: int = 0  # requests looked at
    hung_up: int = 0  # calls the carrier was asked to end
    already_ended: int = 0  # the carrier no longer knew the call as live
    errors: list[str] = field(default_factory=list)


def enforce_call_limits(
    conn: psycopg.Connection, client: redis.Redis, http: httpx.Client, *, now_epoch: float | None = None
) -> LimitsReport:
    """One pass: hang up the calls of every due request that are past their limit; schedule the rest."""
    report = LimitsReport()
    now_epoch = time.time() if now_epoch is None else now_epoch
    for batch_id in take_due(client, now_epoch):
        report.checked += 1
        next_at = _check_one(conn, http, batch_id, report)
        if next_at is not None:
            schedule_check(client, batch_id, next_at.timestamp())
    return report


def _check_one(conn: psycopg.Connection, http: httpx.Client, batch_id: str, report: LimitsReport,
               ) -> datetime | None:
    rows = conn.execute(OPEN_CALLS, (batch_id,)).fetchall()
    if not rows:
        return None
    now_row = conn.execute("SELECT now()").fetchone()
    assert now_row is not None
    now: datetime = now_row[0]
    account_id, options = rows[0][1], rows[0][7] or {}
    limits = CallLimits(ring_timeout(options), time_limit(options))
    calls = [OpenCall(attempt_id=r[0], answered=r[2] == AttemptStatus.ANSWERED, request_uuid=r[3],
                      call_uuid=r[4], sent_at=r[5], answer_at=r[6]) for r in rows]
    check = check_request(calls, limits, now)
    if check.overdue:
        _hang_up(conn, http, account_id, check.overdue, report)
    return check.next_at


def _hang_up(conn: psycopg.Connection, http: httpx.Client, account_id: int, calls: list[OpenCall],
             report: LimitsReport) -> None:
    creds, _ = load_account(conn, account_id)
    adapter = adapter_for(creds.provider)
    for call in calls:
        if not (call.request_uuid or call.call_uuid):
            continue  # no id to name it by yet: its ids arrive with the chunk's next mark or a callback
        try:
            if adapter.hang_up(http, creds, call.request_uuid, call.call_uuid):
                report.hung_up += 1
            else:
                report.already_ended += 1
        except ProviderError as exc:
            report.errors.append(f"attempt {call.attempt_id}: {exc}")
            log.warning("call limit: hang-up of attempt %s failed: %s", call.attempt_id, exc)
