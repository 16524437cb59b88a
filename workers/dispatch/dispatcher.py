"""The beat-driven dispatcher: claim due destinations of running campaigns and enqueue dial chunks.

Back-pressure: per account, no more destinations are queued than its budgets can dial within
HORIZON_S (CPS x horizon, and free concurrency), counting what is already queued. So a million-row
campaign never floods Redis, and pause or cancel takes effect within seconds.

The same per-account pass (dispatch_account) also runs when a call on the account ends
(workers.dispatch.refill), so a freed line is filled at once, not at the next tick. One pass at a time per
account (account_turn): two passes reading the same free line would both claim for it.

A campaign with several accounts is dispatched by each account that serves it now
(campaigns.account_routing: by its order, its routing and their circuits), each pass claiming what its own
budgets allow and naming itself on the claim and the chunk. The dispatcher also owns the breaker's clock: an
open circuit past its cool-down goes half-open here, and a half-open account is sent only its probes.
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

from campaigns import circuits
from campaigns.account_routing import serving_accounts
from campaigns.accounts import load_account
from campaigns.campaign_accounts import account_order, fallbacks_of
from campaigns.circuit_rules import Cause, CircuitPolicy
from campaigns.secrets_box import SecretUnreadable
from campaigns.states import ACTIVE_DESTINATION, CampaignState, CircuitState, sql_in
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

Enqueue = Callable[[int, list[int], int], None]  # (campaign_id, destination ids, the account to dial them on)

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
    rates: dict[int, float] = field(default_factory=dict)  # account id -> the rate its pass claimed at


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


def _claim(
    conn: psycopg.Connection, campaign_id: int, zones: list[str], limit: int, account_id: int
) -> list[int]:
    """Claim up to `limit` due destinations (pending/retry_wait due, or queued past their lease) for the
    account that will dial them."""
    if limit <= 0 or not zones:
        return []
    return claim_due_destinations(conn, campaign_id=campaign_id, timezones=zones, limit=limit,
                                  account_id=account_id)


def _queued_count(conn: psycopg.Connection, campaign_ids: list[int], account_id: int) -> int:
    """The account's destinations claimed and not yet sent: queued ones, and those whose attempt a chunk
    started ahead of its request (workers.dialing.chunk_rows.start_ahead: `dialing`, not yet marked as
    sending). Both are work the budgets will spend in the next seconds; leaving the second out let the
    dispatcher claim a whole campaign ahead while its chunks waited for their turn, and a second campaign on
    the account lost its share. Only this account's: a campaign split over two accounts has each one's claims
    on its rows (a claim from before the column has none, and counts for every account). (The attempt count
    reads the open-attempt partial index.)"""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM destination WHERE campaign_id = ANY(%s) AND status = 'queued' "
        "        AND next_attempt_at > now() AND (claim_account_id = %s OR claim_account_id IS NULL)) "
        "     + (SELECT count(*) FROM call_attempt WHERE campaign_id = ANY(%s) AND status = 'dialing' "
        "        AND sent_at IS NULL AND account_id = %s)",
        (campaign_ids, account_id, campaign_ids, account_id),
    ).fetchone()
    return int(row[0]) if row else 0


def _due_estimate(conn: psycopg.Connection, campaign_id: int, cap: int) -> int:
    row = conn.execute(DUE_ESTIMATE, (campaign_id, cap)).fetchone()
    return int(row[0]) if row else 0


RUNNING_CAMPAIGNS = f"""
SELECT * FROM campaign WHERE state = '{CampaignState.RUNNING.value}' AND account_id IS NOT NULL
    AND (start_at IS NULL OR start_at <= now())"""


@dataclass
class Routes:
    """Which running campaigns each account serves now, and the accounts' circuits."""

    by_account: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    circuits: dict[int, circuits.Circuit] = field(default_factory=dict)


def route_campaigns(
    conn: psycopg.Connection, campaigns: list[dict[str, Any]], policy: CircuitPolicy
) -> Routes:
    """Each campaign's accounts in order, their circuits (open ones past their cool-down moved to half-open
    first), and so the accounts that take its new attempts now (campaigns.account_routing)."""
    fallbacks = fallbacks_of(conn, [c["id"] for c in campaigns])
    orders = {c["id"]: account_order(c["account_id"], fallbacks.get(c["id"], [])) for c in campaigns}
    accounts = {a for order in orders.values() for a in order}
    found = circuits.circuits_of(conn, accounts)
    now = datetime.now(UTC)
    if any(c.retry_at is not None and c.retry_at <= now for c in found.values()):
        for account_id in circuits.move_due(conn, accounts, policy):
            log.warning("account %s: cool-down over, its circuit is half-open: %d probe attempts",
                        account_id, policy.probes)
        found = circuits.circuits_of(conn, accounts)
    routes = Routes(circuits=found)
    states = {a: c.state for a, c in found.items()}
    for c in campaigns:
        for account_id in serving_accounts(orders[c["id"]], states, c["routing"]):
            routes.by_account.setdefault(account_id, []).append(c)
    return routes


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
    """One dispatcher pass over every account serving running campaigns."""
    report = DispatchReport()
    now = now or datetime.now(UTC)
    finish_campaigns(conn, report)
    with conn.cursor(row_factory=dict_row) as cur:
        campaigns = cur.execute(RUNNING_CAMPAIGNS + " ORDER BY id").fetchall()
    policy = CircuitPolicy.from_settings()
    routes = route_campaigns(conn, campaigns, policy)
    chunks = InterleavedChunks()
    for account_id, group in routes.by_account.items():
        try:
            # An account whose turn is taken is being refilled by that very pass now: no need to wait for it.
            with account_turn(budgets.client, account_id) as mine:
                if mine:
                    _dispatch_or_pause(conn, budgets, chunks.add, account_id, group, now, report,
                                       routes.circuits[account_id], policy)
        except redis.RedisError:
            log.exception("dispatching account %s failed; the other accounts go on", account_id)
    chunks.publish(enqueue, report.rates)
    return report


@dataclass
class InterleavedChunks:
    """A tick's chunks, held until every account's pass has claimed, then published in the order their first
    sends fall due (chunk i of an account at rate r: the destinations before it / r). Published pass by pass,
    one account's whole horizon went to the workers before the next account's first chunk, and a campaign
    split over two accounts had its second account start about a second late at every top-up
    (bench/RESULTS.md, "Split routing over two accounts")."""

    held: list[tuple[int, list[int], int]] = field(default_factory=list)

    def add(self, campaign_id: int, destination_ids: list[int], account_id: int) -> None:
        self.held.append((campaign_id, destination_ids, account_id))

    def publish(self, enqueue: Enqueue, rates: dict[int, float]) -> None:
        before: dict[int, int] = {}
        due: list[tuple[float, int, tuple[int, list[int], int]]] = []
        for order, chunk in enumerate(self.held):
            account_id = chunk[2]
            ahead = before.get(account_id, 0)
            before[account_id] = ahead + len(chunk[1])
            due.append((ahead / max(rates.get(account_id, 1.0), 1e-6), order, chunk))
        for _, _, (campaign_id, destination_ids, account_id) in sorted(due):
            enqueue(campaign_id, destination_ids, account_id)
        self.held.clear()


def dispatch_account(
    conn: psycopg.Connection,
    budgets: Budgets,
    enqueue: Enqueue,
    account_id: int,
    *,
    wait_s: float,
    now: datetime | None = None,
) -> DispatchReport | None:
    """The tick's pass for one account alone (the line refill's, when a call on it ended): the running
    campaigns it serves now. None if another pass held the account's turn for over `wait_s`."""
    report = DispatchReport()
    with account_turn(budgets.client, account_id, wait_s) as mine:
        if not mine:
            return None
        with conn.cursor(row_factory=dict_row) as cur:
            campaigns = cur.execute(
                RUNNING_CAMPAIGNS + " AND (account_id = %s OR id IN (SELECT campaign_id FROM "
                "campaign_fallback_account WHERE account_id = %s)) ORDER BY id", (account_id, account_id)
            ).fetchall()
        policy = CircuitPolicy.from_settings()
        routes = route_campaigns(conn, campaigns, policy)
        group = routes.by_account.get(account_id)
        if group:
            _dispatch_or_pause(conn, budgets, enqueue, account_id, group, now or datetime.now(UTC), report,
                               routes.circuits[account_id], policy)
    return report


def _dispatch_or_pause(
    conn: psycopg.Connection,
    budgets: Budgets,
    enqueue: Enqueue,
    account_id: int,
    group: list[dict[str, Any]],
    now: datetime,
    report: DispatchReport,
    circuit: circuits.Circuit,
    policy: CircuitPolicy,
) -> None:
    try:
        _dispatch_account(conn, budgets, enqueue, account_id, group, now, report, circuit, policy)
    except SecretUnreadable as exc:
        # Nothing can be dialed on this account until a person re-enters its token; the others go on, and
        # so do the campaigns that have another account to fail over to.
        reason = f"{exc}: re-enter it with `dialer account update {account_id} --auth-token`"
        circuits.open_circuit(conn, account_id, Cause.AUTH, reason, policy)
        report.paused += pause_account_campaigns(conn, account_id, reason)
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
    circuit: circuits.Circuit,
    policy: CircuitPolicy,
) -> None:
    creds, limits = load_account(conn, account_id)
    rate = budgets.current_rate(account_id, limits.cps)
    report.rates[account_id] = rate
    rate_cap = math.ceil(rate * HORIZON_S)
    free_slots = limits.max_concurrent - budgets.live_count(account_id)
    in_flight = _queued_count(conn, [c["id"] for c in campaigns], account_id)
    allowance = min(rate_cap, free_slots) - in_flight
    probing = circuit.state == CircuitState.HALF_OPEN
    if probing:  # a half-open account gets its probes and nothing more
        allowance = min(allowance, circuit.probes_left(policy))
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
            claimed = _claim_override(conn, cid, shares[cid], account_id) if zones[cid] else []
        else:
            claimed = _claim(conn, cid, zones[cid], shares[cid], account_id)
        if probing:
            circuits.note_probes_claimed(conn, account_id, len(claimed))
        claimed = screen_claimed(conn, cid, claimed)
        if not claimed:
            continue
        report.claimed[cid] = report.claimed.get(cid, 0) + len(claimed)
        size = 1 if probing else chunk_size(adapter.traits.limits.max_destinations, c["provider_options"],
                                            rate, c["cps"])
        for i in range(0, len(claimed), size):
            enqueue(cid, claimed[i : i + size], account_id)
            report.chunks += 1


def _claim_override(conn: psycopg.Connection, campaign_id: int, limit: int, account_id: int) -> list[int]:
    """A campaign whose window is judged in one zone for everyone: every destination is in or out together."""
    zones = campaign_timezones(conn, campaign_id)
    return _claim(conn, campaign_id, zones, limit, account_id)

