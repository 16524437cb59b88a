"""The budgets' state kept in Postgres, so a Redis that lost its own can be rebuilt: the persisted 429
pause and lowered AIMD rate (account_budget_state), and the live calls read from the open attempts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

from workers.ratelimit.recovery import BudgetSnapshot, OpenSlot

OPEN_ATTEMPT = "('dialing', 'sent', 'ringing', 'answered')"
# An account that created or sent an attempt this recently may still have a booked send in flight.
RECENT_S = 10
NOTHING_EVER_STORED = """SELECT NOT EXISTS (SELECT 1 FROM call_attempt WHERE sent_at IS NOT NULL)
                          AND NOT EXISTS (SELECT 1 FROM account_budget_state)"""
STATE_KEEP_S = 600  # as AimdPolicy.keep_s: an older lowered rate has been forgotten by Redis anyway

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]


class PostgresBudgetState:
    """BudgetStateStore on the dialer's database; `connect` lends an autocommit connection."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect

    def save_rate(self, account_id: int, rate: float | None) -> None:
        with self._connect() as conn:
            conn.execute(
                """INSERT INTO account_budget_state (account_id, adaptive_cps) VALUES (%s, %s)
                   ON CONFLICT (account_id)
                   DO UPDATE SET adaptive_cps = EXCLUDED.adaptive_cps, updated_at = now()""",
                (account_id, rate),
            )

    def save_pause(self, account_id: int, until: float) -> None:
        with self._connect() as conn:
            conn.execute(
                """INSERT INTO account_budget_state (account_id, paused_until) VALUES (%s, to_timestamp(%s))
                   ON CONFLICT (account_id) DO UPDATE SET updated_at = now(),
                       paused_until = greatest(account_budget_state.paused_until, EXCLUDED.paused_until)""",
                (account_id, until),
            )

    def snapshot(self) -> BudgetSnapshot:
        snap = BudgetSnapshot()
        with self._connect() as conn:
            # The slot member is the attempt's id (workers.ratelimit.slots.slot_member).
            for account_id, campaign_id, member, lease_until in conn.execute(
                f"""SELECT a.account_id, CASE WHEN c.max_concurrent IS NOT NULL THEN a.campaign_id END,
                           a.id::text, extract(epoch FROM a.lease_expires_at)
                    FROM call_attempt a JOIN campaign c ON c.id = a.campaign_id
                    WHERE a.status IN {OPEN_ATTEMPT} AND a.lease_expires_at > now()"""
            ):
                snap.slots.append(OpenSlot(account_id, campaign_id, member, float(lease_until)))
            snap.active_accounts = {
                row[0]
                for row in conn.execute(
                    f"""SELECT DISTINCT account_id FROM call_attempt
                        WHERE status IN {OPEN_ATTEMPT}
                           OR created_at > now() - make_interval(secs => %s)
                           OR sent_at > now() - make_interval(secs => %s)""",
                    (RECENT_S, RECENT_S),
                )
            }
            for account_id, rate, paused_until in conn.execute(
                """SELECT account_id, adaptive_cps, extract(epoch FROM paused_until) FROM account_budget_state
                   WHERE updated_at > now() - make_interval(secs => %s)""",
                (STATE_KEEP_S,),
            ):
                if rate is not None:
                    snap.rates[account_id] = float(rate)
                if paused_until is not None:
                    snap.pauses[account_id] = float(paused_until)
            row = conn.execute(NOTHING_EVER_STORED).fetchone()
            snap.first_start = bool(row and row[0])
        return snap
