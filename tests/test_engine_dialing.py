"""The dialing engine end to end: real Celery worker processes, beat, the API, Postgres, Redis and the
carrier simulator. The simulator's ledger is the witness: what it received is what we sent."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import (
    Stack,
    campaign_state,
    load_campaign,
    max_in_window,
    numbers,
    prepare_and_start,
    running_stack,
)
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator

pytestmark = pytest.mark.timeout(600)

APP_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0086"
SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAPLIVO20", "auth_token": "tok-20", "cps": 20, "max_concurrent": 500},
    {
        "provider": "bandwidth",
        "auth_id": "5550020",
        "auth_token": "bw-pass",
        "cps": 20,
        "max_concurrent": 500,
        "application_id": APP_ID,
        "api_username": "bw-api-user",  # Bandwidth authenticates an API user, never the account id
    },
    {
        "provider": "tryvox",
        "auth_id": "tvx-shared",
        "auth_token": "tvx_sk_test_shared",
        "cps": 20,
        "max_concurrent": 500,
    },
    {"provider": "plivo", "auth_id": "MAPLIVOLOW", "auth_token": "tok-low", "cps": 8, "max_concurrent": 500},
    {
        "provider": "plivo",
        "auth_id": "MAPLIVOKILL",
        "auth_token": "tok-kill",
        "cps": 20,
        "max_concurrent": 500,
    },
    {"provider": "plivo", "auth_id": "MAPLIVOERR", "auth_token": "tok-err", "cps": 50, "max_concurrent": 500},
    {
        "provider": "plivo",
        "auth_id": "MAPLIVOBROKE",
        "auth_token": "tok-broke",
        "cps": 50,
        "max_concurrent": 500,
        "credit": 0,
    },
    {
        "provider": "tryvox",
        "auth_id": "tvx-flaky",
        "auth_token": "tvx_sk_test_flaky",
        "cps": 50,
        "max_concurrent": 500,
    },
]
SPEED = 20.0  # a 20 s carrier call takes 1 s here
QUICK_CALLS = {
    "answered": 100,
    "busy": 0,
    "no_answer": 0,
    "failed": 0,
    "machine": 0,
    "talk_time": [2, 10],
    "ring_time": [1, 4],
}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": SIM_ACCOUNTS, "outcomes": QUICK_CALLS, "callbacks": {"attempts": 5, "backoff": 1.0}}
    with start_simulator(config, speed=SPEED, seed=11) as sim, running_stack(workers=4, threads=8) as stack:
        yield sim, stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url) as connection:
        yield connection


def _account(
    conn: psycopg.Connection,
    sim: RunningSimulator,
    name: str,
    provider: str,
    auth_id: str,
    token: str,
    cps: float,
    **options: Any,
) -> int:
    account_id = add_account(
        conn,
        name=name,
        provider=provider,
        auth_id=auth_id,
        auth_token=token,
        cps=cps,
        max_concurrent=500,
        base_url=sim.base_url,
        options=options or None,
    )
    conn.commit()
    return account_id


def _calls(sim: RunningSimulator, auth_id: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["account"] == auth_id]


def _wait_done(conn: psycopg.Connection, campaign_ids: list[int], timeout: float, stack: Stack) -> None:
    try:
        wait_for(
            lambda: all(campaign_state(conn, c) == "completed" for c in campaign_ids),
            timeout,
            what=f"campaigns {campaign_ids} completed",
        )
    except TimeoutError:
        rows = conn.execute(
            "SELECT campaign_id, status, count(*) FROM destination WHERE campaign_id = ANY(%s) GROUP BY 1, 2",
            (campaign_ids,),
        ).fetchall()
        raise AssertionError(f"not completed: {rows}\n{stack.logs()}") from None


def _assert_budget_kept(calls: list[dict[str, Any]], cps: int, expected: int) -> None:
    """Each destination dialed once, no 1-second window above the CPS. How much of the budget is used is a
    timing figure, measured by `python -m bench precision` (bench/RESULTS.md), never asserted here."""
    destinations = Counter(c["destination"].lstrip("+") for c in calls)
    assert len(destinations) == expected and max(destinations.values()) == 1, "a destination was dialed twice"
    times = [c["received_at"] for c in calls]
    assert max_in_window(times) <= cps


@pytest.mark.parametrize(
    ("provider", "auth_id", "token", "options"),
    [
        ("plivo", "MAPLIVO20", "tok-20", {}),  # bulk requests
        # one destination per request
        ("bandwidth", "5550020", "bw-pass", {"application_id": APP_ID, "api_username": "bw-api-user"}),
    ],
)
def test_four_workers_keep_an_account_under_its_cps_and_dial_everyone_once(
    env, conn, provider, auth_id, token, options
) -> None:
    sim, stack = env
    account_id = _account(conn, sim, f"cps20-{provider}", provider, auth_id, token, 20, **options)
    campaign_id = load_campaign(
        f"cps20-{provider}", numbers(240, start=1000 if provider == "plivo" else 2000)
    )
    prepare_and_start(conn, campaign_id, account_id)
    _wait_done(conn, [campaign_id], 90, stack)
    sim.wait_idle(30)
    stats = sim.stats()["accounts"][auth_id]
    assert stats["rejected_429"] == 0
    assert stats["max_in_1s_window"] <= 20
    _assert_budget_kept(_calls(sim, auth_id), 20, 240)
    done = conn.execute(
        "SELECT count(*) FROM destination WHERE campaign_id = %s AND status = 'done'", (campaign_id,)
    ).fetchone()
    assert done == (240,)


def test_two_campaigns_share_one_account_budget_fairly(env, conn) -> None:
    sim, stack = env
    account_id = _account(conn, sim, "shared", "tryvox", "tvx-shared", "tvx_sk_test_shared", 20)
    big = load_campaign("shared-big", numbers(180, start=3000))
    small = load_campaign("shared-small", numbers(60, start=4000))
    prepare_and_start(conn, big, account_id, start=False)
    prepare_and_start(conn, small, account_id, start=False)
    conn.execute("UPDATE campaign SET state = 'running' WHERE id = ANY(%s)", ([big, small],))
    conn.commit()
    _wait_done(conn, [small], 60, stack)
    # The small campaign got about half the budget while both ran: done in ~6 s, not after the big one.
    big_done_then = conn.execute(
        "SELECT count(*) FROM call_attempt WHERE campaign_id = %s", (big,)
    ).fetchone()
    assert big_done_then is not None and big_done_then[0] < 180
    _wait_done(conn, [big], 90, stack)
    sim.wait_idle(30)
    stats = sim.stats()["accounts"]["tvx-shared"]
    assert stats["rejected_429"] == 0 and stats["max_in_1s_window"] <= 20
    _assert_budget_kept(_calls(sim, "tvx-shared"), 20, 240)


def test_a_carrier_stricter_than_configured_gets_backoff_and_every_destination_once(env, conn) -> None:
    sim, stack = env
    # We believe 20 CPS; the carrier allows 8 and answers 429 (Plivo sends no Retry-After).
    account_id = _account(conn, sim, "too-optimistic", "plivo", "MAPLIVOLOW", "tok-low", 20)
    campaign_id = load_campaign("too-optimistic", numbers(120, start=5000))
    prepare_and_start(conn, campaign_id, account_id)
    _wait_done(conn, [campaign_id], 120, stack)
    sim.wait_idle(30)
    stats = sim.stats()["accounts"]["MAPLIVOLOW"]
    assert stats["rejected_429"] > 0, "the simulator never pushed back; the test proves nothing"
    calls = _calls(sim, "MAPLIVOLOW")
    assert len(calls) == 120 and len({c["destination"] for c in calls}) == 120
    throttled = conn.execute("SELECT throttled_count FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert throttled is not None and throttled[0] >= 1
    attempts = conn.execute(
        "SELECT count(*), max(attempt_no) FROM call_attempt WHERE campaign_id = %s", (campaign_id,)
    ).fetchone()
    assert attempts == (120, 1), "a 429 must not count as an attempt"
    # Converged: the 429s stop; the second half of the run sees far fewer than the first.
    rejections = sorted(r["time"] for r in sim.ledger()["rejections"] if r["account"] == "MAPLIVOLOW")
    first, last = min(c["received_at"] for c in calls), max(c["received_at"] for c in calls)
    middle = (first + last) / 2
    assert sum(1 for t in rejections if t > middle) < max(2, sum(1 for t in rejections if t <= middle))


def test_a_worker_killed_mid_campaign_loses_nothing_and_dials_nobody_twice(env, conn) -> None:
    sim, stack = env
    account_id = _account(conn, sim, "kill", "plivo", "MAPLIVOKILL", "tok-kill", 20)
    campaign_id = load_campaign("kill", numbers(200, start=6000))
    prepare_and_start(conn, campaign_id, account_id)
    wait_for(lambda: len(_calls(sim, "MAPLIVOKILL")) >= 40, 30, what="dialing under way")
    victim = stack.workers[0]
    stack.kill_worker(victim)
    stack.workers.remove(victim)
    stack.start_worker(10)
    _wait_done(conn, [campaign_id], 150, stack)
    sim.wait_idle(30)
    calls = _calls(sim, "MAPLIVOKILL")
    destinations = Counter(c["destination"] for c in calls)
    assert max(destinations.values()) == 1, "a destination was dialed twice"
    final = dict(
        conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall()
    )
    assert sum(final.values()) == 200
    # An attempt committed but never sent (its worker died while waiting for its send time) is handed back
    # by the reaper and dialed again, so nobody is left `unknown` without having been called.
    assert final == {"done": 200}, final
    assert len(destinations) == 200


def _single(conn: psycopg.Connection, campaign_id: int) -> tuple[str, str | None]:
    row = conn.execute(
        "SELECT status, outcome FROM destination WHERE campaign_id = %s", (campaign_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_400_fails_the_destination_with_the_carriers_message(env, conn) -> None:
    sim, _ = env
    account_id = _account(conn, sim, "err400", "plivo", "MAPLIVOERR", "tok-err", 50)
    campaign_id = load_campaign("err400", numbers(1, start=7000))
    prepare_and_start(conn, campaign_id, account_id)
    conn.execute("UPDATE campaign SET caller_id = 'not-a-number' WHERE id = %s", (campaign_id,))
    conn.commit()
    wait_for(lambda: _single(conn, campaign_id)[0] == "failed", 30, what="destination failed")
    message = conn.execute(
        "SELECT status, error_message FROM call_attempt WHERE campaign_id = %s", (campaign_id,)
    ).fetchone()
    assert message is not None and message[0] == "failed" and "from" in message[1].lower()


@pytest.mark.parametrize(
    ("name", "auth_id", "token", "words"),
    [
        ("err401", "MAPLIVOERR", "wrong-token", "credentials"),
        ("err404", "MAPNOSUCHACCOUNT", "tok-err", "credentials"),
        ("err402", "MAPLIVOBROKE", "tok-broke", "balance"),
    ],
)
def test_auth_and_balance_errors_pause_the_campaign_with_a_reason(
    env, conn, name, auth_id, token, words
) -> None:
    sim, _ = env
    account_id = _account(conn, sim, name, "plivo", auth_id, token, 50)
    campaign_id = load_campaign(name, numbers(3, start=7100 + len(name) * 10 + int(name[-3:])))
    prepare_and_start(conn, campaign_id, account_id)
    wait_for(lambda: campaign_state(conn, campaign_id) == "paused", 30, what="campaign paused")
    reason = conn.execute("SELECT state_reason FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
    assert reason is not None and words in reason[0]
    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall()
    )
    assert statuses == {"pending": 3}, (
        "nothing was placed, so nothing is lost and nothing counts as an attempt"
    )
    assert conn.execute(
        "SELECT count(*) FROM call_attempt WHERE campaign_id = %s", (campaign_id,)
    ).fetchone() == (0,)


def test_a_503_with_retry_after_is_retried_with_backoff_until_the_carrier_recovers(env, conn) -> None:
    # The carrier's limiter says outright that nothing was placed: the one 5xx retried without waiting for
    # evidence (any other 5xx is ambiguous: tests/test_engine_ambiguous_sends.py).
    sim, stack = env
    account_id = _account(conn, sim, "flaky", "tryvox", "tvx-flaky", "tvx_sk_test_flaky", 50)
    campaign_id = load_campaign("flaky", numbers(5, start=7500))
    sim.configure({"faults": {"api_503": 1.0, "api_503_retry_after": 1.0}})
    try:
        prepare_and_start(conn, campaign_id, account_id)
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(DISTINCT destination_id) FROM call_attempt WHERE campaign_id = %s "
                    "AND error_message LIKE 'transient%%'",
                    (campaign_id,),
                ).fetchone()[0]
                == 5
            ),
            30,
            what="each destination met a 503",
        )
        done = conn.execute(
            "SELECT count(*) FROM destination WHERE campaign_id = %s AND status = 'done'", (campaign_id,)
        ).fetchone()
        assert done == (0,)
    finally:
        sim.configure({"faults": {"api_503": 0.0}})
    assert len(_calls(sim, "tvx-flaky")) == 0, "a 503 from the limiter placed nothing"
    # Backoff put them in retry_wait; bring the retries forward rather than wait out the jitter.
    conn.execute(
        "UPDATE destination SET next_attempt_at = now() WHERE campaign_id = %s AND status = 'retry_wait'",
        (campaign_id,),
    )
    conn.commit()
    _wait_done(conn, [campaign_id], 60, stack)
    assert dict(
        conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall()
    ) == {"done": 5}
    assert len(_calls(sim, "tvx-flaky")) == 5, (
        "each destination dialed exactly once after the carrier recovered"
    )


QUIET_WINDOW_S = 3.0


def _requests_in_flight(conn: psycopg.Connection, campaign_id: int) -> int:
    """Attempts whose create request has not been answered yet (status 'dialing')."""
    conn.commit()  # a fresh snapshot each poll
    row = conn.execute("SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status = 'dialing'",
                       (campaign_id,)).fetchone()
    return int(row[0]) if row else 0


def test_paused_campaign_places_no_new_calls(env, conn) -> None:
    sim, stack = env
    account_id = _account(conn, sim, "pausing", "plivo", "MAPLIVO20", "tok-20", 20)
    campaign_id = load_campaign("pausing", numbers(200, start=8000))
    prepare_and_start(conn, campaign_id, account_id)
    wait_for(
        lambda: (
            len(
                [
                    c
                    for c in _calls(sim, "MAPLIVO20")
                    if c["destination"].startswith("1212200") and int(c["destination"][-4:]) >= 8000
                ]
            )
            >= 20
        ),
        30,
        what="dialing under way",
    )
    conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
    conn.commit()
    wait_for(lambda: _requests_in_flight(conn, campaign_id) == 0, 30, what="in-flight requests answered")
    before = len(_calls(sim, "MAPLIVO20"))
    time.sleep(QUIET_WINDOW_S)  # not a wait: the window in which no call may be placed
    assert len(_calls(sim, "MAPLIVO20")) == before, "calls were placed after the pause took effect"
    pending = conn.execute(
        "SELECT count(*) FROM destination WHERE campaign_id = %s AND status = 'pending'", (campaign_id,)
    ).fetchone()
    assert pending is not None and pending[0] > 0


def test_reaper_keeps_a_call_the_carrier_says_is_still_live(env, conn) -> None:
    import httpx as _httpx

    from workers.housekeeping.reaper import reap_expired_attempts
    from workers.ratelimit.process_budgets import get_budgets

    sim, _ = env
    account_id = _account(conn, sim, "long-call", "tryvox", "tvx-flaky", "tvx_sk_test_flaky", 50)
    sim.configure({"outcomes": {"talk_time": [600, 600]}})  # 30 s of real time at this speed
    try:
        campaign_id = load_campaign("long-call", numbers(1, start=9000))
        prepare_and_start(conn, campaign_id, account_id)
        wait_for(
            lambda: _single(conn, campaign_id)[0] == "answered", 30, what="the call answered and still going"
        )
    finally:
        sim.configure({"outcomes": QUICK_CALLS})
    conn.execute(
        "UPDATE call_attempt SET lease_expires_at = now() - interval '1 second' WHERE campaign_id = %s",
        (campaign_id,),
    )
    conn.commit()
    budgets = get_budgets()
    with _httpx.Client(timeout=5) as client:
        report = reap_expired_attempts(conn, client, budgets)
    assert report.still_live >= 1 and report.unknown == 0
    attempt = conn.execute(
        "SELECT status, lease_expires_at > now() FROM call_attempt WHERE campaign_id = %s", (campaign_id,)
    ).fetchone()
    assert attempt == ("answered", True), "a live call must stay open with a fresh lease"
    assert budgets.live_count(account_id) >= 1, "a live call keeps its concurrency slot"
