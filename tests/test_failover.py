"""Failover and pooling end to end (issue 23): real Celery workers, beat, the API, Postgres, Redis, and two
carriers, each a simulator process of its own (so refusing connections at one refuses only that carrier),
of different providers. The simulators' ledgers are the witness: what each carrier received is what we sent.

Each scenario puts the campaign where the bug would live: the primary fails mid-campaign with destinations
still due, so nothing but failover can finish it. The short versions run in `make test`; the issue's sizes
(2,000 calls at 50 CPS, a 60 s outage with the default cool-down) run in `make soak`."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from campaigns import circuits
from campaigns.accounts import add_account
from campaigns.campaign_accounts import Fallback, replace_fallbacks
from campaigns.states import CircuitState
from tests.engine_harness import (
    Stack,
    load_campaign,
    max_in_window,
    numbers,
    prepare_and_start,
    running_stack,
)
from tests.fault_harness import soak_seconds
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator

pytestmark = pytest.mark.timeout(900)

SPEED = 20.0  # a 20 s carrier call takes 1 s here
QUICK_CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
               "talk_time": [2, 10], "ring_time": [1, 4]}
# Short ring timeout and evidence margin: an ambiguous send (a connection cut mid-request) is settled by its
# evidence window (ring timeout + margin) in 15 s rather than the default 90 s.
OPTIONS = {"ring_timeout": 10, "time_limit": 60, "evidence_margin_s": 5}
COOLDOWN_S = 2.0  # the stack's circuit cool-down, so a recovery is seen within seconds (default 30 s)
SOAK = os.environ.get("DIALER_SOAK") == "1"


@pytest.fixture(scope="module")
def stack(database_url: str, redis_client: Any) -> Iterator[Stack]:
    # The worker processes read the breaker's settings at start: this module's processes only.
    extra_env = {} if SOAK else {"DIALER_CIRCUIT_COOLDOWN_S": str(COOLDOWN_S)}
    with running_stack(workers=2, threads=8, extra_env=extra_env) as stack:
        yield stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@dataclass
class Carrier:
    sim: RunningSimulator
    auth_id: str
    account_id: int


def _carrier(stack_: ExitStack, conn: psycopg.Connection, provider: str, cps: float, seed: int) -> Carrier:
    """A simulator process with one account of `provider` at `cps`, and our account for it."""
    tag = secrets.token_hex(3)
    auth_id, token = {"plivo": (f"MAFAIL{tag.upper()}", f"tok-{tag}"),
                      "tryvox": (f"tvx-{tag}", f"tvx_sk_test_{tag}"),
                      "vobiz": (f"MA_FAIL{tag.upper()}", f"vbz-{tag}")}[provider]
    account = {"provider": provider, "auth_id": auth_id, "auth_token": token, "cps": cps,
               "max_concurrent": 1000}
    sim = stack_.enter_context(start_simulator(
        {"accounts": [account], "outcomes": QUICK_CALLS, "callbacks": {"attempts": 5, "backoff": 1.0}},
        speed=SPEED, seed=seed))
    account_id = add_account(conn, name=f"{provider}-{tag}", provider=provider, auth_id=auth_id,
                             auth_token=token, cps=cps, max_concurrent=1000, base_url=sim.base_url)
    return Carrier(sim, auth_id, account_id)


def _campaign(conn: psycopg.Connection, name: str, count: int, start: int, primary: Carrier,
              fallback: Carrier, routing: str = "failover") -> int:
    campaign_id = load_campaign(f"{name}-{secrets.token_hex(3)}", numbers(count, start=start, area="646"))
    prepare_and_start(conn, campaign_id, primary.account_id, provider_options=OPTIONS, start=False)
    with conn.transaction():
        replace_fallbacks(conn, campaign_id, [Fallback(fallback.account_id, "+14155550199")])
        conn.execute("UPDATE campaign SET routing = %s WHERE id = %s", (routing, campaign_id))
    return campaign_id


def _start(conn: psycopg.Connection, campaign_id: int) -> float:
    conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
    return time.time()


def _wait_completed(conn: psycopg.Connection, campaign_id: int, timeout: float) -> None:
    try:
        wait_for(lambda: conn.execute("SELECT state FROM campaign WHERE id = %s",
                                      (campaign_id,)).fetchone() == ("completed",), timeout,
                 what=f"campaign {campaign_id} completed", interval=0.5)
    except TimeoutError:
        rows = conn.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                            (campaign_id,)).fetchall()
        raise TimeoutError(f"campaign {campaign_id} not completed: {dict(rows)}") from None


def _calls(carrier: Carrier) -> list[dict[str, Any]]:
    return [c for c in carrier.sim.ledger()["calls"] if c["account"] == carrier.auth_id]


def _throttled(carrier: Carrier) -> int:
    return int(carrier.sim.stats()["accounts"].get(carrier.auth_id, {}).get("rejected_429", 0))


def _assert_each_dialed_once(conn: psycopg.Connection, campaign_id: int, count: int,
                             *carriers: Carrier) -> None:
    """Every destination was placed exactly once across both carriers, and ended `done`; no carrier
    answered a 429, and none saw more than its CPS in any second."""
    placed = Counter(c["destination"] for carrier in carriers for c in _calls(carrier))
    twice = {number: n for number, n in placed.items() if n > 1}
    assert not twice, f"dialed twice: {list(twice.items())[:5]}"
    statuses = dict(conn.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                                 (campaign_id,)).fetchall())
    assert statuses == {"done": count}, statuses
    assert len(placed) == count
    for carrier in carriers:
        assert _throttled(carrier) == 0, f"{carrier.auth_id} answered 429"
        cps = conn.execute("SELECT cps FROM provider_account WHERE id = %s", (carrier.account_id,)).fetchone()
        assert cps is not None
        times = [c["received_at"] for c in _calls(carrier)]
        assert max_in_window(times) <= cps[0], f"{carrier.auth_id} saw more than its CPS in a second"


def _accounts_of_attempts(conn: psycopg.Connection, campaign_id: int) -> Counter[int]:
    return Counter(r[0] for r in conn.execute(
        "SELECT account_id FROM call_attempt WHERE campaign_id = %s AND status = 'completed'",
        (campaign_id,)))


def _fail_once_dialing(primary: Carrier, fault: str, seconds: float) -> dict[str, Any]:
    """Once the primary has been dialing for a while (10 s at the soak size, 50 calls in `make test`), make it
    fail for `seconds`: the campaign is mid-flight, with destinations still due. Returns the fault window."""
    if SOAK:
        first = wait_for(lambda: [c["received_at"] for c in _calls(primary)], 60, what="the primary dialing")
        time.sleep(max(0.0, min(first) + 10.0 - time.time()))
    else:
        wait_for(lambda: len(_calls(primary)) >= 50, 60, what="the primary dialing", interval=0.05)
    listing = primary.sim.schedule_faults([{"account": primary.auth_id, "fault": fault, "start_in": 0,
                                            "seconds": seconds}])
    window: dict[str, Any] = listing["faults"][-1]
    return window


def _record(scenario: str, **figures: Any) -> None:
    """Print the scenario's figures (docs/RELIABILITY.md, "Failover") and append them to
    DIALER_FAULT_FIGURES when set (make soak)."""
    line = json.dumps({"scenario": scenario, "soak": SOAK, **figures})
    print(line)
    path = os.environ.get("DIALER_FAULT_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def _settled_then_redialed_s(conn: psycopg.Connection, campaign_id: int, account_id: int) -> list[float]:
    """For each destination whose send on `account_id` was left ambiguous: seconds from the end of its
    evidence window (sent_at + ring timeout + margin) to its next attempt's send."""
    window_s = OPTIONS["ring_timeout"] + OPTIONS["evidence_margin_s"]
    rows = conn.execute(
        "SELECT extract(epoch FROM (n.sent_at - (a.sent_at + make_interval(secs => %s)))) "
        "FROM call_attempt a JOIN call_attempt n ON n.destination_id = a.destination_id "
        "AND n.attempt_no = a.attempt_no + 1 WHERE a.campaign_id = %s AND a.account_id = %s "
        "AND a.status <> 'completed' AND a.sent_at IS NOT NULL",
        (window_s, campaign_id, account_id)).fetchall()
    return sorted(float(r[0]) for r in rows)


def _spread(values: list[float]) -> dict[str, float]:
    """Least, median and most of sorted values (empty: none)."""
    if not values:
        return {}
    middle = values[len(values) // 2]
    return {"min": round(values[0], 1), "p50": round(middle, 1), "max": round(values[-1], 1)}


def _scenario_size(short: int, soak: int) -> int:
    return soak if SOAK else short


def test_primary_refusing_connections_fails_over_to_a_backup_of_another_provider(stack, conn) -> None:
    count = _scenario_size(400, 2000)
    refused_s = 120.0 if SOAK else 10.0
    with ExitStack() as carriers:
        primary = _carrier(carriers, conn, "plivo", 50, seed=21)
        backup = _carrier(carriers, conn, "tryvox", 50, seed=22)
        campaign_id = _campaign(conn, "refused", count, 1000, primary, backup)
        _start(conn, campaign_id)
        fault = _fail_once_dialing(primary, "refused", refused_s)
        _wait_completed(conn, campaign_id, soak_seconds(300) if SOAK else 120)
        opened = [c for c in reversed(circuits.changes_of(conn, primary.account_id, limit=50))
                  if c.state == CircuitState.OPEN]
        assert opened and opened[0].cause == "failure_rate", "the refusals opened the primary's circuit"
        # The primary's own ledger can be read once it listens again.
        wait_for(lambda: time.time() > fault["end_wall"] + 0.5, refused_s + 5, what="the refusal over")
        _assert_each_dialed_once(conn, campaign_id, count, primary, backup)
        on_primary, on_backup = _calls(primary), _calls(backup)
        history = conn.execute("SELECT account_id, status, error_message, count(*) FROM call_attempt "
                               "WHERE campaign_id = %s GROUP BY 1, 2, 3", (campaign_id,)).fetchall()
        assert on_primary and on_backup, f"both carriers placed calls: {history} {fault}"
        refusing = [c for c in on_primary if fault["start_wall"] + 0.5 < c["received_at"] < fault["end_wall"]]
        assert not refusing, "a refusing carrier got calls"
        took_over_s = min(c["received_at"] for c in on_backup) - fault["start_wall"]
        changes = [(c.state.value, round(c.changed_at.timestamp() - fault["start_wall"], 2), c.reason)
                   for c in reversed(circuits.changes_of(conn, primary.account_id, limit=50))]
        assert took_over_s <= 5.0, f"the backup took over {took_over_s:.1f} s after the failure: {changes}"
        # The attempt history names the account that placed each call.
        by_account = _accounts_of_attempts(conn, campaign_id)
        assert by_account == {primary.account_id: len(on_primary), backup.account_id: len(on_backup)}
        redialed = _settled_then_redialed_s(conn, campaign_id, primary.account_id)
        _record("refused", calls=count, on_primary=len(on_primary), on_backup=len(on_backup),
                opened_after_s=round(opened[0].changed_at.timestamp() - fault["start_wall"], 2),
                backup_took_over_after_s=round(took_over_s, 2), ambiguous=len(redialed),
                redialed_after_evidence_window_s=_spread(redialed))


def test_primary_answering_401_fails_over_without_pausing_the_campaign(stack, conn) -> None:
    count = _scenario_size(300, 2000)
    with ExitStack() as carriers:
        primary = _carrier(carriers, conn, "plivo", 50, seed=31)
        backup = _carrier(carriers, conn, "tryvox", 50, seed=32)
        campaign_id = _campaign(conn, "revoked", count, 3000, primary, backup)
        _start(conn, campaign_id)
        fault = _fail_once_dialing(primary, "401", 3600)
        _wait_completed(conn, campaign_id, soak_seconds(300) if SOAK else 90)
        _assert_each_dialed_once(conn, campaign_id, count, primary, backup)
        assert _calls(primary) and _calls(backup)
        took_over_s = min(c["received_at"] for c in _calls(backup)) - fault["start_wall"]
        assert took_over_s <= 5.0, f"the backup took over {took_over_s:.1f} s after the 401s began"
        circuit = circuits.circuit_of(conn, primary.account_id)
        assert (circuit.state, circuit.cause) == (CircuitState.OPEN, "auth"), circuit
        assert "401" in (circuit.reason or "") or "auth" in (circuit.reason or "").lower(), circuit.reason
        assert circuit.changed_at is not None
        _record("401", calls=count, on_primary=len(_calls(primary)), on_backup=len(_calls(backup)),
                opened_after_s=round(circuit.changed_at.timestamp() - fault["start_wall"], 2),
                backup_took_over_after_s=round(took_over_s, 2))


def test_primary_answering_5xx_then_recovering_takes_the_campaign_back(stack, conn) -> None:
    # The backup is slower, so the campaign outlasts the outage and the cool-down: the primary must be
    # probed, close, and take the rest.
    count = _scenario_size(500, 2000)
    outage = 60.0 if SOAK else 4.0
    with ExitStack() as carriers:
        primary = _carrier(carriers, conn, "plivo", 50, seed=41)
        backup = _carrier(carriers, conn, "vobiz", 10 if SOAK else 20, seed=42)
        campaign_id = _campaign(conn, "outage", count, 5000, primary, backup)
        _start(conn, campaign_id)
        fault = _fail_once_dialing(primary, "5xx", outage)
        _wait_completed(conn, campaign_id, soak_seconds(400) if SOAK else 150)
        _assert_each_dialed_once(conn, campaign_id, count, primary, backup)
        on_backup = _calls(backup)
        assert on_backup, "the backup took over during the outage"
        back_on_primary = [c for c in _calls(primary) if c["received_at"] > fault["end_wall"]]
        assert back_on_primary, "new attempts returned to the primary once it recovered"
        last_backup = max(c["received_at"] for c in on_backup)
        later_on_primary = [c for c in back_on_primary if c["received_at"] > last_backup]
        assert later_on_primary, "after its return the primary took the campaign's attempts"
        assert circuits.circuit_of(conn, primary.account_id).state == CircuitState.CLOSED
        states = [c.state for c in reversed(circuits.changes_of(conn, primary.account_id, limit=50))]
        assert states[0] == CircuitState.OPEN and states[-1] == CircuitState.CLOSED, states
        assert CircuitState.HALF_OPEN in states
        changes = list(reversed(circuits.changes_of(conn, primary.account_id, limit=50)))
        redialed = _settled_then_redialed_s(conn, campaign_id, primary.account_id)
        closed_at = changes[-1].changed_at.timestamp()
        _record("5xx then recovered", calls=count, outage_s=outage, on_backup=len(on_backup),
                on_primary=len(_calls(primary)), returned_to_primary=len(later_on_primary),
                opened_after_s=round(changes[0].changed_at.timestamp() - fault["start_wall"], 2),
                closed_after_recovery_s=round(closed_at - fault["end_wall"], 2),
                changes=[c.state.value for c in changes],
                ambiguous=len(redialed), redialed_after_evidence_window_s=_spread(redialed))


def test_split_routing_dials_over_both_accounts_each_within_its_own_budget(stack, conn) -> None:
    count = _scenario_size(500, 3000)
    with ExitStack() as carriers:
        first = _carrier(carriers, conn, "plivo", 50, seed=51)
        second = _carrier(carriers, conn, "tryvox", 50, seed=52)
        campaign_id = _campaign(conn, "split", count, 7000, first, second, routing="split")
        _start(conn, campaign_id)
        _wait_completed(conn, campaign_id, soak_seconds(300) if SOAK else 90)
        _assert_each_dialed_once(conn, campaign_id, count, first, second)
        shares = sorted(len(_calls(c)) for c in (first, second))
        assert shares[0] >= 0.35 * count, f"both accounts dialed in proportion to their CPS: {shares}"
        _record("split", calls=count, per_account=shares,
                max_per_second=[max_in_window([c["received_at"] for c in _calls(carrier)])
                                for carrier in (first, second)])
