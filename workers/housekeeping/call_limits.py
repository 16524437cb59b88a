"""The campaign limits a carrier cannot be told, enforced by the dialer: it ends those calls itself through
the carrier's hang-up API. One mechanism for every provider, one owner, one schedule.

Which limits: `adapter.limits_the_dialer_enforces(account)`, a subset of {"ring", "time"} (the provider's
`traits.api.dialer_enforces`, narrowed where an account option says how the carrier reads its page).
VoIPbin takes neither at creation: ring and time. Vobiz's one bound, `hangup_on_ring`, is "from start of
ringing to hangup" (Advanced Parameters: `hangup_on_ring`); under the account reading "call" (the default) the
request carries ring timeout + time limit, so the carrier ends an answered call at its time limit and the
dialer ends the ringing: ring only. Under "ring" the carrier is told the ring timeout: none. Every other
provider: none.

Owner and deadline: a Redis sorted set holds one member per provider request (its batch id), scored by the
next moment one of its open calls reaches a limit the dialer enforces. The dial chunk puts a request there
after its send (workers.dialing.limit_checks: at the ring timeout after the send, as no call of it can reach
a limit sooner), so the send path costs one ZADD and no database round trip. The 1 s beat task
`enforce_call_limits` owns the set: it takes each due request (ZREM decides between two passes), reads its
open calls, hangs up each one past its limit and schedules the request again at its next deadline while a
call of it still has one. Ringing is counted from the arrival of the call's first ring callback (our clock)
when one came, else from the send (a bulk's calls are placed at the carrier's pace, so a late one may have
rung less); an answered call from its answer time. A call past its limit is asked again every RECHECK_S
(its hang-up may have failed, or its ids may not be known yet) for ASK_WINDOW_S: its hangup callback
usually follows at once, and one that is lost is the reaper's at the attempt's lease, like any other.

If Redis loses the set (FLUSHALL, a restart without persistence), nothing would look at the live calls
again. The reaper, on its 5 s tick, calls `restore_lost_checks`: one query for the open attempts of the
accounts whose limits the dialer enforces, and each request of them with a deadline still to watch (the
same pure `check_request`, so it never revives one the pass has let go) that is missing from the set is
scheduled again at its next deadline. A lost schedule costs at most one reaper tick of precision.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import redis

from campaigns.accounts import AccountCredentials, load_account
from campaigns.call_options import ring_timeout, time_limit
from campaigns.states import OPEN_ATTEMPT, AttemptStatus, sql_in
from workers import redis_keys
from workers.providers.base import ProviderAdapter
from workers.providers.calls import EventKind
from workers.providers.errors import ProviderError
from workers.providers.registry import PROVIDERS, adapter_for
from workers.providers.traits import CallLimit

log = logging.getLogger(__name__)

RECHECK_S = 5.0  # a call still open after its hang-up (or with no id to name it by yet) is looked at again
ASK_WINDOW_S = 120.0  # how long past its limit a call is still asked to end; then it is the reaper's
DUE_PAGE = 100  # requests taken per pass
RESTORE_PAGE = 5000  # open attempts read per reaper tick when restoring lost checks

# Providers with a limit the dialer may have to enforce (an account may narrow it to none).
ENFORCING_PROVIDERS = sorted(kind for kind, adapter in PROVIDERS.items()
                             if adapter.traits.api.dialer_enforces)

_OPEN_CALL_COLUMNS = f"""a.batch_id, a.id, a.account_id, a.status, a.request_uuid, a.call_uuid, a.sent_at,
       a.answer_at, (SELECT min(e.received_at) FROM call_event e
                     WHERE e.attempt_id = a.id AND e.kind = '{EventKind.RING.value}') AS rang_at,
       c.provider_options, statement_timestamp() AS now"""
OPEN_CALLS_OF_REQUEST = f"""
SELECT {_OPEN_CALL_COLUMNS}
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id
WHERE a.batch_id = %s AND {sql_in("a.status", OPEN_ATTEMPT)}"""
OPEN_CALLS_OF_ENFORCING_ACCOUNTS = f"""
SELECT {_OPEN_CALL_COLUMNS}
FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id JOIN provider_account p ON p.id = a.account_id
WHERE {sql_in("a.status", OPEN_ATTEMPT)} AND a.sent_at IS NOT NULL AND a.batch_id IS NOT NULL
  AND p.provider = ANY(%s)
ORDER BY a.batch_id LIMIT %s"""


@dataclass(frozen=True)
class OpenCall:
    """One open attempt of a request, as the limits see it (`rang_at`: its first ring callback's arrival)."""

    attempt_id: int
    answered: bool
    sent_at: datetime | None
    answer_at: datetime | None
    request_uuid: str | None = None
    call_uuid: str | None = None
    rang_at: datetime | None = None


@dataclass(frozen=True)
class CallLimits:
    """A campaign's limits, and which of them the dialer enforces for the request's account."""

    ring_timeout_s: int
    time_limit_s: int
    enforced: frozenset[CallLimit] = frozenset({"ring", "time"})


def call_deadline(call: OpenCall, limits: CallLimits) -> datetime | None:
    """When the dialer must have ended the call: its answer plus the time limit; unanswered, its ring (else
    its send) plus the ring timeout. None where that limit is not the dialer's (the carrier enforces it) or
    before the call was sent."""
    ring_start = call.rang_at or call.sent_at
    if call.answered or call.answer_at is not None:
        if "time" not in limits.enforced:
            return None
        if call.answer_at is not None:
            return call.answer_at + timedelta(seconds=limits.time_limit_s)
        # Answered, its answer time not known: the longest the call may have had.
        longest = limits.ring_timeout_s + limits.time_limit_s
        return None if ring_start is None else ring_start + timedelta(seconds=longest)
    if "ring" not in limits.enforced or ring_start is None:
        return None
    return ring_start + timedelta(seconds=limits.ring_timeout_s)


@dataclass(frozen=True)
class LimitCheck:
    """What one check of a request decides: the calls to hang up now, and when to look again (None: no call
    of it has a deadline left to watch)."""

    overdue: list[OpenCall]
    next_at: datetime | None


def check_request(calls: Iterable[OpenCall], limits: CallLimits, now: datetime) -> LimitCheck:
    """The open calls of one request past their limit, and the next deadline of the rest (pure)."""
    overdue: list[OpenCall] = []
    next_at: list[datetime] = []
    recheck = now + timedelta(seconds=RECHECK_S)
    for call in calls:
        if call.sent_at is None:  # not sent yet: its send is on its way, and its deadline with it
            next_at.append(recheck)
            continue
        deadline = call_deadline(call, limits)
        if deadline is None or deadline + timedelta(seconds=ASK_WINDOW_S) <= now:
            continue  # not the dialer's limit, or asked long enough: the attempt's lease (reaper) remains
        if deadline <= now:
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


class _Accounts:
    """Each account's credentials and adapter, read once per pass."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self._known: dict[int, tuple[AccountCredentials, ProviderAdapter]] = {}

    def get(self, account_id: int) -> tuple[AccountCredentials, ProviderAdapter]:
        if account_id not in self._known:
            creds, _ = load_account(self._conn, account_id)
            self._known[account_id] = (creds, adapter_for(creds.provider))
        return self._known[account_id]

    def limits(self, account_id: int, options: dict[str, Any] | None) -> CallLimits:
        creds, adapter = self.get(account_id)
        options = options or {}
        enforced = adapter.limits_the_dialer_enforces(creds)
        return CallLimits(ring_timeout(options), time_limit(options), enforced)


def _open_call(row: tuple[Any, ...]) -> OpenCall:
    _, attempt_id, _, status, request_uuid, call_uuid, sent_at, answer_at, rang_at = row[:9]
    return OpenCall(attempt_id=attempt_id, answered=status == AttemptStatus.ANSWERED, sent_at=sent_at,
                    answer_at=answer_at, request_uuid=request_uuid, call_uuid=call_uuid, rang_at=rang_at)


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
    accounts = _Accounts(conn)
    for batch_id in take_due(client, time.time() if now_epoch is None else now_epoch):
        report.checked += 1
        rows = conn.execute(OPEN_CALLS_OF_REQUEST, (batch_id,)).fetchall()
        if not rows:
            continue
        account_id, options, now = rows[0][2], rows[0][9], rows[0][10]
        check = check_request([_open_call(r) for r in rows], accounts.limits(account_id, options), now)
        if check.overdue:
            _hang_up(http, *accounts.get(account_id), check.overdue, report)
        if check.next_at is not None:
            schedule_check(client, batch_id, check.next_at.timestamp())
    return report


def _hang_up(http: httpx.Client, creds: AccountCredentials, adapter: ProviderAdapter, calls: list[OpenCall],
             report: LimitsReport) -> None:
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


def restore_lost_checks(conn: psycopg.Connection, client: redis.Redis) -> int:
    """The reaper's safety net: schedule again every request with an open call still to watch that the set
    no longer holds (Redis lost its state); how many were restored."""
    rows = conn.execute(OPEN_CALLS_OF_ENFORCING_ACCOUNTS, (ENFORCING_PROVIDERS, RESTORE_PAGE)).fetchall()
    by_request: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_request[str(row[0])].append(row)
    if not by_request:
        return 0
    accounts = _Accounts(conn)
    watched: dict[str, datetime] = {}
    for batch_id, calls in by_request.items():
        first = calls[0]
        check = check_request([_open_call(r) for r in calls], accounts.limits(first[2], first[9]), first[10])
        if check.next_at is not None:  # a call already past its limit: due now
            watched[batch_id] = first[10] if check.overdue else check.next_at
    pipe = client.pipeline(transaction=False)
    for batch_id in watched:
        pipe.zscore(redis_keys.call_limit_checks(), batch_id)
    lost = [batch_id for batch_id, score in zip(watched, pipe.execute(), strict=True) if score is None]
    for batch_id in lost:
        schedule_check(client, batch_id, watched[batch_id].timestamp())
    if lost:
        log.warning("call limits: %d requests had no scheduled check (Redis lost its state?): restored",
                    len(lost))
    return len(lost)
