"""The beat-driven dispatcher: claim due destinations of running campaigns and enqueue dial chunks.

Back-pressure: per account, no more destinations are queued than its budgets can dial within
HORIZON_S (CPS x horizon, and free concurrency), counting what is already queued. So a million-row
campaign never floods Redis, and pause or cancel takes effect within seconds.

The same per-account pass (dispatch_account) also runs when a call on the account ends
(workers.dispatch.refill), so a freed line is filled at once, not at the next tick. One pass at a time per
account (account_turn): two passes reading the same free line would both claim for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from campaigns.accounts import load_account
from campaigns.secrets_box import SecretUnreadable
from campaigns.states import ACTIVE_DESTINATION, CampaignState, sql_in
from campaigns.store.claims import DUE_NOW, claim_due_destinations, expire_undialed
from campaigns.store.dial_store import pause_account_campaigns
from campaigns.windows import open_timezones, window_of
from workers import redis_keys
from workers.dispatch.dnc_screen import screen_claimed
from workers.dispatch.fair_share import split_by_weight
from workers.held_lock import held_lock
from workers.providers.registry import adapter_for
from workers.ratelimit import Budgets
from workers.ratelimit.chunk_sizing import chunk_size

log = logging.getLogger(__name__)

HORIZON_S = 2.0  # seconds of budget kept queued ahead of the workers
TIMEZONE_CACHE_TTL_S = 300.0
# An account's turn is held for one pass (milliseconds); the lease only frees the turn of a process that
# died holding it.
ACCOUNT_TURN_LEASE_S = 5.0
ACCOUNT_TURN_POLL_S = 0.005
# Each pass renews the account's line-bound flag for this long: ticks come every second, refills with each
# ended call; a dispatcher that stopped stops the announcements within it.
LINES_BOUND_LEASE_S = 10.0

Enqueue = Callable[[int, list[int]], None]  # (campaign_id, destination ids)

_timezones: dict[int, tuple[float, list[str]]] = {}


@dataclass
class DispatchReport:
    claimed: dict[int, int] = field(default_factory=dict)  # campaign id -> destinations claimed
    chunks: int = 0
    completed: list[int] = field(default_factory=list)
    expired: int = 0
    paused: int = 0  # campaigns paused because their account cannot be used
    # account id -> its free lines that queued destinations cover (workers.dispatch.refill looks again)
    covered_by_queued: dict[int, int] = field(default_factory=dict)


def campaign_timezones(conn: psycopg.Connection, campaign_id: int) -> list[str]:
    """The distinct zones of a campaign's destinations (fixed after load), cached."""
    hit = _timezones.get(campaign_id)
    if hit and time.monotonic() - hit[0] < TIMEZONE_CACHE_TTL_S:
        return hit[1]
    zones = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT timezone FROM destination WHERE campaign_id = %s", (campaign_id,)
        ).fetchall()
    ]
    _timezones[campaign_id] = (time.monotonic(), zones)
    return zones


COMPLETE_FINISHED = f"""
UPDATE campaign c SET state = '{CampaignState.COMPLETED.value}', state_reason = 'every destination finished',
    updated_at = now()
WHERE c.state = '{CampaignState.RUNNING.value}' AND NOT EXISTS (
    SELECT 1 FROM destination d WHERE d.campaign_id = c.id AND {sql_in("d.status", ACTIVE_DESTINATION)})
RETURNING c.id"""
# Counts what the claim would take (campaigns.store.claims.DUE_NOW), expired claims included.
DUE_ESTIMATE = f"""
SELECT count(*) FROM (SELECT 1 FROM destination WHERE campaign_id = %s AND {DUE_NOW} LIMIT %s) s"""


def finish_campaigns(conn: psycopg.Connection, report: DispatchReport) -> None:
    """Expire what a finished schedule left undialed; complete campaigns with nothing left to do."""
    with conn.transaction():
        report.expired = expire_undialed(conn)
        rows = conn.execute(COMPLETE_FINISHED).fetchall()
        report.completed = [r[0] for r in rows]


def _claim(conn: psycopg.Connection, campaign_id: int, zones: list[str], limit: int) -> list[int]:
    """Claim up to `limit` due destinations (pending/retry_wait due, or queued past their lease)."""
    if limit <= 0 or not zones:
        return []
    return claim_due_destinations(conn, campaign_id=campaign_id, timezones=zones, limit=limit)


def _queued_count(conn: psycopg.Connection, campaign_ids: list[int]) -> int:
    """Destinations claimed and not yet sent: queued ones, and those whose attempt a chunk started ahead of
    its request (workers.dialing.chunk_rows.start_ahead: `dialing`, not yet marked as sending). Both are work
    the budgets will spend in the next seconds; leaving the second out let the dispatcher claim a whole
    campaign ahead while its chunks waited for their turn, and a second campaign on the account lost its
    share. (The attempt count reads the open-attempt partial index.)"""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM destination WHERE campaign_id = ANY(%s) AND status = 'queued' "
        "        AND next_attempt_at > now()) "
        "     + (SELECT count(*) FROM call_attempt WHERE campaign_id = ANY(%s) AND status = 'dialing' "
        "        AND sent_at IS NULL)",
        (campaign_ids, campaign_ids),
    ).fetchone()
    return int(row[0]) if row else 0


def _due_estimate(conn: psycopg.Connection, campaign_id: int, cap: int) -> int:
    row = conn.execute(DUE_ESTIMATE, (campaign_id, cap)).fetchone()
    return int(row[0]) if row else 0


RUNNING_CAMPAIGNS = f"""
SELECT * FROM campaign WHERE state = '{CampaignState.RUNNING.value}' AND account_id IS NOT NULL
    AND (start_at IS NULL OR start_at <= now())"""


@contextmanager
def account_turn(client: redis.Redis, account_id: int, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold the account's dispatch turn for the block; yields False (holding nothing) if another pass kept
    it for over `wait_s`."""
    with held_lock(client, redis_keys.dispatch_account_lock(account_id), ACCOUNT_TURN_LEASE_S,
                   wait_s=wait_s, poll_s=ACCOUNT_TURN_POLL_S) as mine:
        yield mine


def dispatch_tick(
    conn: psycopg.Connection, budgets: Budgets, enqueue: Enqueue, now: datetime | None = None
) -> DispatchReport:
    """One dispatcher pass over every account with running campaigns."""
    report = DispatchReport()
    now = now or datetime.now(UTC)
    finish_campaigns(conn, report)
    with conn.cursor(row_factory=dict_row) as cur:
        campaigns = cur.execute(RUNNING_CAMPAIGNS + " ORDER BY id").fetchall()
    by_account: dict[int, list[dict[str, Any]]] = {}
    for c in campaigns:
        by_account.setdefault(c["account_id"], []).append(c)
    for account_id, group in by_account.items():
        try:
            # An account whose turn is taken is being refilled by that very pass now: no need to wait for it.
            with account_turn(budgets.client, account_id) as mine:
                if mine:
                    _dispatch_or_pause(conn, budgets, enqueue, account_id, group, now, report)
        except redis.RedisError:
            log.exception("dispatching account %s failed; the other accounts go on", account_id)
    return report


def dispatch_account(
    conn: psycopg.Connection,
    budgets: Budgets,
    enqueue: Enqueue,
    account_id: int,
    *,
    wait_s: float,
    now: datetime | None = None,
) -> DispatchReport | None:
    """The tick's pass for one account alone (the line refill's, when a call on it ended). None if another
    pass held the account's turn for over `wait_s`."""
    report = DispatchReport()
    with account_turn(budgets.client, account_id, wait_s) as mine:
        if not mine:
            return None
        with conn.cursor(row_factory=dict_row) as cur:
            group = cur.execute(RUNNING_CAMPAIGNS + " AND account_id = %s ORDER BY id",
                                (account_id,)).fetchall()
        if group:
            _dispatch_or_pause(conn, budgets, enqueue, account_id, group, now or datetime.now(UTC), report)
    return report


def _dispatch_or_pause(
    conn: psycopg.Connection,
    budgets: Budgets,
    enqueue: Enqueue,
    account_id: int,
    group: list[dict[str, Any]],
    now: datetime,
    report: DispatchReport,
) -> None:
    try:
        _dispatch_account(conn, budgets, enqueue, account_id, group, now, report)
    except SecretUnreadable as exc:
        # Nothing can be dialed on this account until a person re-enters its token; the others go on.
        report.paused += pause_account_campaigns(
            conn, account_id, f"{exc}: re-enter it with `dialer account update {account_id} --auth-token`"
        )
    except Exception:
        log.exception("dispatching account %s failed; the other accounts go on", account_id)


def _dispatch_account(
    conn: psycopg.Connection,
    budgets: Budgets,
    enqueue: Enqueue,
    account_id: int,
    campaigns: list[dict[str, Any]],
    now: datetime,
    report: DispatchReport,
) -> None:
    creds, limits = load_account(conn, account_id)
    rate = budgets.current_rate(account_id, limits.cps)
    rate_cap = math.ceil(rate * HORIZON_S)
    free_slots = limits.max_concurrent - budgets.live_count(account_id)
    in_flight = _queued_count(conn, [c["id"] for c in campaigns])
    allowance = min(rate_cap, free_slots) - in_flight
    # A chunk between taking its slot and starting its attempt counts twice for a moment (live and queued),
    # so a free line can look covered when it is not: the refill looks again shortly.
    report.covered_by_queued[account_id] = min(max(free_slots, 0), in_flight)
    lines_bind = free_slots <= rate_cap
    if allowance <= 0:
        budgets.note_lines_bound(account_id, lines_bind, LINES_BOUND_LEASE_S)
        return
    zones: dict[int, list[str]] = {}
    demand: dict[int, int] = {}
    for c in campaigns:
        window = window_of(c["window_start"], c["window_end"], c["window_days"], c["start_at"], c["end_at"])
        tz_list = [c["timezone_override"]] if c["timezone_override"] else campaign_timezones(conn, c["id"])
        zones[c["id"]] = open_timezones(window, tz_list, now)
        own_cap = math.ceil(c["cps"] * HORIZON_S) if c["cps"] else allowance
        demand[c["id"]] = min(own_cap, _due_estimate(conn, c["id"], allowance)) if zones[c["id"]] else 0
    # Line-bound: the free lines, not the CPS, held the claim back and more is due than they allow. Only then
    # do ended calls announce their lines: where the CPS binds, a freed line changes nothing.
    waiting = sum(demand.values()) >= allowance
    budgets.note_lines_bound(account_id, lines_bind and waiting, LINES_BOUND_LEASE_S)
    shares = split_by_weight(allowance, {c["id"]: c["weight"] for c in campaigns}, demand)
    adapter = adapter_for(creds.provider)
    for c in campaigns:
        cid = c["id"]
        if c["timezone_override"]:
            claimed = _claim_override(conn, cid, shares[cid]) if zones[cid] else []
        else:
            claimed = _claim(conn, cid, zones[cid], shares[cid])
        claimed = screen_claimed(conn, account_id, claimed)
        if not claimed:
            continue
        report.claimed[cid] = len(claimed)
        size = chunk_size(adapter.traits.limits.max_destinations, c["provider_options"], rate, c["cps"])
        for i in range(0, len(claimed), size):
            enqueue(cid, claimed[i : i + size])
            report.chunks += 1


def _claim_override(conn: psycopg.Connection, campaign_id: int, limit: int) -> list[int]:
    """A campaign whose window is judged in one zone for everyone: every destination is in or out together."""
    zones = campaign_timezones(conn, campaign_id)
    return _claim(conn, campaign_id, zones, limit)

