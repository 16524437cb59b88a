"""Each account's circuit breaker in Postgres (`account_circuit`): read it, and make its moves, each a
conditional write on the state it expects so that two workers seeing the same failure open it once.

The rules (when to open, how long, when to close) are campaigns.circuit_rules; this module only stores their
outcome. Every change of state is also written to `account_circuit_change` by schema.sql's trigger, in the
same transaction, so `campaign status`, the console and the outbound events all read one history.
Postgres, not Redis, holds the state: Redis losing its keys loses only the failure window's counts, so an
open circuit stays open and a closed one starts counting afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from campaigns.circuit_rules import Cause, CircuitPolicy, closes_after, cooldown_base_s, probes_left
from campaigns.states import CircuitState


@dataclass(frozen=True)
class Circuit:
    """One account's breaker as stored (an account without a row is closed)."""

    account_id: int
    state: CircuitState = CircuitState.CLOSED
    cause: str | None = None
    reason: str | None = None
    changed_at: datetime | None = None
    retry_at: datetime | None = None
    opened_in_a_row: int = 0
    probes_claimed: int = 0
    probes_passed: int = 0

    def probes_left(self, policy: CircuitPolicy) -> int:
        return probes_left(self.probes_claimed, policy) if self.state == CircuitState.HALF_OPEN else 0


@dataclass(frozen=True)
class CircuitChange:
    account_id: int
    state: CircuitState
    cause: str | None
    reason: str | None
    changed_at: datetime


def _circuit(row: dict) -> Circuit:  # type: ignore[type-arg]
    return Circuit(account_id=row["account_id"], state=CircuitState(row["state"]), cause=row["cause"],
                   reason=row["reason"], changed_at=row["changed_at"], retry_at=row["retry_at"],
                   opened_in_a_row=row["opened_in_a_row"], probes_claimed=row["probes_claimed"],
                   probes_passed=row["probes_passed"])


def circuits_of(conn: psycopg.Connection, account_ids: Iterable[int]) -> dict[int, Circuit]:
    """Each account's circuit (closed where none is stored)."""
    ids = sorted(set(account_ids))
    found = {a: Circuit(a) for a in ids}
    if not ids:
        return found
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute("SELECT * FROM account_circuit WHERE account_id = ANY(%s)", (ids,)):
            found[row["account_id"]] = _circuit(row)
    return found


def circuit_of(conn: psycopg.Connection, account_id: int) -> Circuit:
    return circuits_of(conn, [account_id])[account_id]


# The latest changes of each account, newest first: one probe of (account_id, id) per account.
_CHANGES = """
SELECT a.id, ch.state, ch.cause, ch.reason, ch.changed_at
FROM unnest(%s::bigint[]) AS a(id)
CROSS JOIN LATERAL (SELECT id, state, cause, reason, changed_at FROM account_circuit_change
                    WHERE account_id = a.id ORDER BY id DESC LIMIT %s) ch
ORDER BY a.id, ch.id DESC
"""


def changes_by_account(conn: psycopg.Connection, account_ids: Iterable[int],
                       limit: int = 20) -> dict[int, list[CircuitChange]]:
    """Each account's latest changes of state, newest first (an account without any: an empty list)."""
    ids = sorted(set(account_ids))
    found: dict[int, list[CircuitChange]] = {a: [] for a in ids}
    if ids:
        for account_id, state, cause, reason, at in conn.execute(_CHANGES, (ids, limit)).fetchall():
            found[account_id].append(CircuitChange(account_id, CircuitState(state), cause, reason, at))
    return found


def changes_of(conn: psycopg.Connection, account_id: int, limit: int = 20) -> list[CircuitChange]:
    """The account's latest changes of state, newest first."""
    return changes_by_account(conn, [account_id], limit)[account_id]


# Opening: from closed (the window tripped, or a refusal), from half-open (a probe failed: the cool-down
# grows), or by an operator from any state. `opened_in_a_row` counts openings since the circuit last closed.
_OPEN = """
INSERT INTO account_circuit AS c (account_id, state, cause, reason, changed_at, retry_at, opened_in_a_row)
VALUES (%(account)s, 'open', %(cause)s, %(reason)s, now(),
        CASE WHEN %(operator)s THEN NULL
        ELSE now() + make_interval(secs => least(%(max_cooldown)s, %(base)s)) END, 1)
ON CONFLICT (account_id) DO UPDATE SET
    state = 'open', cause = %(cause)s, reason = %(reason)s, changed_at = now(),
    opened_in_a_row = c.opened_in_a_row + 1, probes_claimed = 0, probes_passed = 0,
    retry_at = CASE WHEN %(operator)s THEN NULL
               ELSE now() + make_interval(secs => least(%(max_cooldown)s,
                                                        %(base)s * power(2, c.opened_in_a_row)))
               END
WHERE c.state = ANY(%(from_states)s)
RETURNING c.state
"""


def open_circuit(conn: psycopg.Connection, account_id: int, cause: Cause, reason: str,
                 policy: CircuitPolicy) -> bool:
    """Open the account's circuit for `cause`, if it is closed or half-open (an operator's disable opens it
    from any state). True if this call opened it; committed by the caller's transaction or autocommit."""
    operator = cause == Cause.OPERATOR
    from_states = list(CircuitState) if operator else [CircuitState.CLOSED, CircuitState.HALF_OPEN]
    # The cool-down is circuit_rules.cooldown_s, computed here from the row's own count of openings.
    row = conn.execute(_OPEN, {
        "account": account_id, "cause": cause.value, "reason": reason[:500], "operator": operator,
        "max_cooldown": policy.cooldown_max_s, "base": cooldown_base_s(cause, policy),
        "from_states": [s.value for s in from_states],
    }).fetchone()
    return row is not None


_CLOSE = """
UPDATE account_circuit SET state = 'closed', cause = NULL, reason = %s, changed_at = now(), retry_at = NULL,
    opened_in_a_row = 0, probes_claimed = 0, probes_passed = 0
WHERE account_id = %s AND state = ANY(%s)
"""


def enable(conn: psycopg.Connection, account_id: int) -> bool:
    """An operator's `dialer account enable`: closed, whatever it was. True if it was not closed."""
    states = [CircuitState.OPEN.value, CircuitState.HALF_OPEN.value]
    return conn.execute(_CLOSE, ("enabled by operator", account_id, states)).rowcount > 0


def disable(conn: psycopg.Connection, account_id: int, reason: str = "disabled by operator") -> bool:
    """An operator's `dialer account disable`: open until enabled. True if it changed anything."""
    return open_circuit(conn, account_id, Cause.OPERATOR, reason, CircuitPolicy())


_HALF_OPEN_DUE = """
UPDATE account_circuit SET state = 'half_open', changed_at = now(), probes_claimed = 0, probes_passed = 0,
    reason = 'cool-down over: probing', retry_at = now() + make_interval(secs => %s)
WHERE state = 'open' AND retry_at <= now() AND account_id = ANY(%s)
RETURNING account_id
"""
# A half-open account whose probes got no result by the deadline (their chunk died, their destinations were
# handed back) is sent probes again: the half-open state's deadline, as the cool-down is the open one's.
_PROBES_AGAIN = """
UPDATE account_circuit SET probes_claimed = probes_passed, retry_at = now() + make_interval(secs => %s)
WHERE state = 'half_open' AND retry_at <= now() AND account_id = ANY(%s)
RETURNING account_id
"""


def move_due(conn: psycopg.Connection, account_ids: Iterable[int], policy: CircuitPolicy) -> list[int]:
    """The dispatcher's moves: open circuits past their cool-down go half-open, half-open ones past their
    probe deadline get their probes back. Returns the accounts that went half-open."""
    ids = sorted(set(account_ids))
    if not ids:
        return []
    half_open = [r[0] for r in conn.execute(_HALF_OPEN_DUE, (policy.probe_deadline_s, ids))]
    conn.execute(_PROBES_AGAIN, (policy.probe_deadline_s, ids))
    return half_open


def note_probes_claimed(conn: psycopg.Connection, account_id: int, count: int) -> None:
    """The dispatcher claimed `count` destinations to probe a half-open account."""
    if count > 0:
        conn.execute("UPDATE account_circuit SET probes_claimed = probes_claimed + %s "
                     "WHERE account_id = %s AND state = 'half_open'", (count, account_id))


def probe_inconclusive(conn: psycopg.Connection, account_id: int, count: int) -> None:
    """`count` probes of a half-open account ended without a verdict (a 429, the carrier's limiter, a send
    given back before it left): they are not spent, and the dispatcher sends others at once rather than at
    the probe deadline."""
    conn.execute("UPDATE account_circuit SET probes_claimed = greatest(probes_passed, probes_claimed - %s) "
                 "WHERE account_id = %s AND state = 'half_open'", (count, account_id))


def probe_passed(conn: psycopg.Connection, account_id: int, count: int, policy: CircuitPolicy) -> bool:
    """`count` probes of a half-open account succeeded; it closes once enough have. True if this closed it."""
    row = conn.execute(
        "UPDATE account_circuit SET probes_passed = probes_passed + %s WHERE account_id = %s "
        "AND state = 'half_open' RETURNING probes_passed", (count, account_id)).fetchone()
    if row is None or not closes_after(row[0], policy):
        return False
    closed = conn.execute(_CLOSE, (f"{row[0]} probes passed", account_id, [CircuitState.HALF_OPEN.value]))
    return closed.rowcount > 0


__all__ = ["Cause", "Circuit", "CircuitChange", "changes_by_account", "changes_of", "circuit_of",
           "circuits_of", "disable", "enable", "move_due", "note_probes_claimed", "open_circuit",
           "probe_inconclusive", "probe_passed"]
