"""The circuit breaker's rules and routing (pure), and its store in Postgres: each move conditional on the
state it expects, every change in the history, the cool-down growing, probes closing it."""

from __future__ import annotations

import secrets
from datetime import timedelta

import psycopg
import pytest

from campaigns import circuits
from campaigns.account_routing import serving_accounts
from campaigns.accounts import add_account
from campaigns.circuit_rules import Cause, CircuitPolicy, Verdict, cooldown_s, trips
from campaigns.states import CircuitState as S
from campaigns.states import Routing
from workers.dialing.circuit_breaker import verdict_of
from workers.providers.errors import (
    Ambiguous,
    AuthFailed,
    PaymentRequired,
    Refused,
    Rejected,
    Throttled,
    Transient,
)

POLICY = CircuitPolicy(window_s=10, min_failures=5, failure_ratio=0.5, cooldown_s=30, auth_cooldown_s=300,
                       cooldown_max_s=600, probes=3, probe_deadline_s=60)


def test_a_window_trips_on_enough_failures_that_are_also_a_large_enough_share() -> None:
    assert not trips(4, 0, POLICY), "four failures are not yet a carrier down"
    assert trips(5, 0, POLICY)
    assert trips(5, 5, POLICY), "half of the requests failed"
    assert not trips(5, 6, POLICY), "one 5xx in a healthy stream changes nothing"
    assert not trips(0, 0, POLICY)


def test_the_cool_down_doubles_on_each_reopening_up_to_its_cap_and_an_operator_s_never_ends() -> None:
    assert cooldown_s(Cause.FAILURE_RATE, 1, POLICY) == 30
    assert cooldown_s(Cause.FAILURE_RATE, 2, POLICY) == 60
    assert cooldown_s(Cause.FAILURE_RATE, 9, POLICY) == 600
    assert cooldown_s(Cause.AUTH, 1, POLICY) == cooldown_s(Cause.PAYMENT, 1, POLICY) == 300
    assert cooldown_s(Cause.OPERATOR, 1, POLICY) is None


@pytest.mark.parametrize(("error", "verdict", "cause"), [
    (None, Verdict.HEALTHY, None),
    (AuthFailed("401", status=401), Verdict.FAILED, Cause.AUTH),
    (PaymentRequired("402", status=402), Verdict.FAILED, Cause.PAYMENT),
    (Transient("connection refused"), Verdict.FAILED, Cause.FAILURE_RATE),
    (Ambiguous("502"), Verdict.FAILED, Cause.FAILURE_RATE),
    (Throttled("429"), Verdict.NEUTRAL, None),
    (Transient("503 from the limiter", status=503, retry_after=1.0), Verdict.NEUTRAL, None),
    (Rejected("400 bad number", status=400), Verdict.HEALTHY, None),
    (Refused("not sent: extra"), Verdict.HEALTHY, None),
])
def test_what_each_answer_says_of_the_account_s_health(
    error: Exception | None, verdict: Verdict, cause: Cause | None
) -> None:
    assert verdict_of(error) == (verdict, cause)


def test_failover_takes_the_first_closed_account_and_probes_a_half_open_one_before_it() -> None:
    order = [1, 2, 3]
    assert serving_accounts(order, {}, Routing.FAILOVER) == [1]
    assert serving_accounts(order, {1: S.OPEN}, Routing.FAILOVER) == [2]
    assert serving_accounts(order, {1: S.OPEN, 2: S.OPEN}, Routing.FAILOVER) == [3]
    assert serving_accounts(order, {1: S.HALF_OPEN}, Routing.FAILOVER) == [1, 2], "probes, and the backup"
    assert serving_accounts(order, {1: S.OPEN, 2: S.OPEN, 3: S.OPEN}, Routing.FAILOVER) == []
    assert serving_accounts(order, {1: S.OPEN, 2: S.HALF_OPEN, 3: S.OPEN}, Routing.FAILOVER) == [2]


def test_split_takes_every_account_that_is_not_open() -> None:
    assert serving_accounts([1, 2, 3], {}, Routing.SPLIT) == [1, 2, 3]
    assert serving_accounts([1, 2, 3], {2: S.OPEN, 3: S.HALF_OPEN}, Routing.SPLIT) == [1, 3]


def _account(db: psycopg.Connection) -> int:
    return add_account(db, name=f"breaker-{secrets.token_hex(4)}", provider="plivo", auth_id="MABREAKER",
                       auth_token="t", cps=5, max_concurrent=5)


def _backdate(db: psycopg.Connection, account_id: int) -> None:
    db.execute("UPDATE account_circuit SET retry_at = now() - interval '1 second' WHERE account_id = %s",
               (account_id,))


def test_a_circuit_opens_once_goes_half_open_at_its_cool_down_and_closes_when_its_probes_pass(
    db: psycopg.Connection,
) -> None:
    account = _account(db)
    assert circuits.circuit_of(db, account).state == S.CLOSED, "no row: closed"
    assert circuits.open_circuit(db, account, Cause.FAILURE_RATE, "5 of 5 failed", POLICY)
    assert not circuits.open_circuit(db, account, Cause.FAILURE_RATE, "a second worker", POLICY), "once"
    opened = circuits.circuit_of(db, account)
    assert (opened.state, opened.cause, opened.reason) == (S.OPEN, "failure_rate", "5 of 5 failed")
    assert opened.retry_at is not None and opened.changed_at is not None
    assert timedelta(seconds=29) < opened.retry_at - opened.changed_at <= timedelta(seconds=30)
    assert circuits.move_due(db, [account], POLICY) == [], "still cooling down"
    _backdate(db, account)
    assert circuits.move_due(db, [account], POLICY) == [account]
    half = circuits.circuit_of(db, account)
    assert (half.state, half.probes_left(POLICY)) == (S.HALF_OPEN, 3)
    circuits.note_probes_claimed(db, account, 3)
    assert circuits.circuit_of(db, account).probes_left(POLICY) == 0, "no more than its probes"
    circuits.probe_inconclusive(db, account, 1)  # a 429 or the carrier's limiter: no verdict, not spent
    assert circuits.circuit_of(db, account).probes_left(POLICY) == 1
    circuits.note_probes_claimed(db, account, 1)
    assert not circuits.probe_passed(db, account, 2, POLICY)
    assert circuits.probe_passed(db, account, 1, POLICY), "the third probe closes it"
    closed = circuits.circuit_of(db, account)
    assert (closed.state, closed.opened_in_a_row) == (S.CLOSED, 0)
    history = [c.state for c in circuits.changes_of(db, account)]
    assert history == [S.CLOSED, S.HALF_OPEN, S.OPEN], "every change, newest first"


def test_a_failed_probe_opens_it_again_for_twice_as_long_and_lost_probes_are_sent_again(
    db: psycopg.Connection,
) -> None:
    account = _account(db)
    circuits.open_circuit(db, account, Cause.FAILURE_RATE, "down", POLICY)
    _backdate(db, account)
    circuits.move_due(db, [account], POLICY)
    circuits.note_probes_claimed(db, account, 3)
    _backdate(db, account)  # the probes' deadline passed with no result (their chunk died)
    circuits.move_due(db, [account], POLICY)
    assert circuits.circuit_of(db, account).probes_left(POLICY) == 3, "sent again"
    assert circuits.open_circuit(db, account, Cause.FAILURE_RATE, "probe failed: 503", POLICY)
    again = circuits.circuit_of(db, account)
    assert again.opened_in_a_row == 2 and again.retry_at is not None and again.changed_at is not None
    assert timedelta(seconds=59) < again.retry_at - again.changed_at <= timedelta(seconds=60)


def test_an_operator_s_disable_holds_until_enabled_and_a_refusal_does_not_replace_it(
    db: psycopg.Connection,
) -> None:
    account = _account(db)
    assert circuits.disable(db, account)
    disabled = circuits.circuit_of(db, account)
    assert (disabled.state, disabled.cause, disabled.retry_at) == (S.OPEN, "operator", None)
    assert circuits.move_due(db, [account], POLICY) == [], "no cool-down ends an operator's disable"
    assert not circuits.open_circuit(db, account, Cause.AUTH, "401", POLICY)
    assert circuits.circuit_of(db, account).cause == "operator"
    assert circuits.enable(db, account)
    assert circuits.circuit_of(db, account).state == S.CLOSED
    assert not circuits.enable(db, account), "already closed"
