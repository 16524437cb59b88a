"""The results consumer end to end: the simulator's callbacks (with faults) through the real `dialer api`
process into Postgres, applied to attempts and destinations; the reaper as a beat task. The simulator's
ledger is the witness of what really happened to each call."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from campaigns.accounts import add_account
from campaigns.store import attempt_marks, dial_store
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.results_helpers import (
    LEDGER_TO_OUTCOME,
    NO_RETRIES,
    attempt_rows,
    signed_url,
    voipbin_hangup,
    voipbin_headers,
    wait_for,
)
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.callbacks.applier import apply_events_for_ids
from workers.callbacks.urls import webhook_url
from workers.providers.signatures import callback_url_secret
from workers.ratelimit.process_budgets import get_budgets

pytestmark = pytest.mark.timeout(300)

SPEED = 20.0
# The rich callback shapes: these tests check fault handling and per-outcome retries, which need the
# causes (busy, failed) that seed-shaped Plivo hangups do not carry (tests/test_providers_end_to_end.py
# covers the seed shapes).
SIM_ACCOUNTS: list[dict[str, Any]] = [
    {
        "provider": "plivo",
        "auth_id": "MARESFAULTS",
        "auth_token": "tok-faults",
        "cps": 20,
        "max_concurrent": 500,
        "callback_shape": "rich",
    },
    {"provider": "plivo", "auth_id": "MARESBULK", "auth_token": "tok-bulk", "cps": 20, "max_concurrent": 500,
     "callback_shape": "rich"},
    {
        "provider": "tryvox",
        "auth_id": "tvx-retry",
        "auth_token": "tvx_sk_test_retry",
        "cps": 20,
        "max_concurrent": 500,
        "callback_shape": "rich",
    },
    {
        "provider": "tryvox",
        "auth_id": "tvx-reap",
        "auth_token": "tvx_sk_test_reap",
        "cps": 20,
        "max_concurrent": 500,
        "callback_shape": "rich",
    },
    {"provider": "plivo", "auth_id": "MARESREAP", "auth_token": "tok-reap", "cps": 20, "max_concurrent": 500,
     "callback_shape": "rich"},
    {
        "provider": "voipbin",
        "auth_id": "vb-early",
        "auth_token": "vb-early-token",
        "cps": 20,
        "max_concurrent": 500,
        "callback_shape": "rich",
    },
]
MIX = {
    "answered": 55,
    "busy": 15,
    "no_answer": 10,
    "failed": 20,
    "machine": 0,
    "talk_time": [2, 10],
    "ring_time": [1, 4],
}
OPTIONS = {"ring_timeout": 30, "time_limit": 60}
OPEN = ("dialing", "sent", "ringing", "answered")
FINAL_STATUS = {
    "answered": "done",
    "busy": "done",
    "no_answer": "done",
    "machine": "done",
    "failed": "failed",
    "unknown": "unknown",
}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": SIM_ACCOUNTS, "outcomes": MIX, "callbacks": {"attempts": 5, "backoff": 1.0}}
    with start_simulator(config, speed=SPEED, seed=5) as sim, running_stack(workers=2, threads=8) as stack:
        yield sim, stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _account(conn: psycopg.Connection, sim: RunningSimulator, provider: str, auth_id: str) -> int:
    token = next(a["auth_token"] for a in SIM_ACCOUNTS if a["auth_id"] == auth_id)
    return add_account(
        conn,
        name=f"{auth_id}-{uuid.uuid4().hex[:6]}",
        provider=provider,
        auth_id=auth_id,
        auth_token=token,
        cps=20,
        max_concurrent=500,
        base_url=sim.base_url,
    )


def _ledger_calls(sim: RunningSimulator, auth_id: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["account"] == auth_id]


def _attempts(conn: psycopg.Connection, campaign_id: int) -> list[dict[str, Any]]:
    return attempt_rows(conn, campaign_id)


def _open_count(conn: psycopg.Connection, campaign_ids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM call_attempt WHERE campaign_id = ANY(%s) AND status = ANY(%s)",
        (campaign_ids, list(OPEN)),
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_calls_over(sim: RunningSimulator, auth_id: str, expected: int, timeout: float = 60) -> None:
    """The carrier placed `expected` calls for the account and every one of them has hung up."""
    wait_for(
        lambda: len([c for c in _ledger_calls(sim, auth_id) if c["status"] == "completed"]) >= expected,
        timeout,
        f"{expected} calls completed at the carrier for {auth_id}",
    )
    sim.wait_idle(30)


def _expire_open_leases(conn: psycopg.Connection, campaign_ids: list[int]) -> int:
    """Pretend the open attempts' leases ran out (the real lease is ring + talk limit + 60 s)."""
    return conn.execute(
        "UPDATE call_attempt SET lease_expires_at = now() - interval '1 second' "
        "WHERE campaign_id = ANY(%s) AND status = ANY(%s)",
        (campaign_ids, list(OPEN)),
    ).rowcount


def _by_number(calls: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for call in sorted(calls, key=lambda c: c["seq"]):
        out.setdefault("+" + call["destination"].lstrip("+"), []).append(call)
    return out


def test_duplicated_reordered_delayed_and_dropped_callbacks_end_every_destination_as_the_carrier_says(
    env, conn
) -> None:
    sim, _ = env
    account_id = _account(conn, sim, "plivo", "MARESFAULTS")
    campaign_id = load_campaign("faults", numbers(40, start=100, area="646"))
    sim.configure(
        {
            "faults": {
                "duplicate": 0.3,
                "reorder": 0.4,
                "delay": {"fraction": 0.3, "max_seconds": 1.0},
                "drop": 0.1,
            }
        }
    )
    try:
        prepare_and_start(conn, campaign_id, account_id, provider_options=OPTIONS, retry_policy=NO_RETRIES)
        _wait_calls_over(sim, "MARESFAULTS", 40)
    finally:
        sim.configure({"faults": {"duplicate": 0.0, "reorder": 0.0, "delay": 0.0, "drop": 0.0}})
    cb_stats = sim.stats()["callbacks"]
    assert cb_stats["duplicated"] > 0 and cb_stats["reordered"] > 0 and cb_stats["dropped"] > 0, cb_stats
    # Calls whose hangup was dropped stay open until their lease; make it pass and let the reaper ask.
    _expire_open_leases(conn, [campaign_id])
    wait_for(lambda: _open_count(conn, [campaign_id]) == 0, 30, "no attempt left open")

    ledger = _by_number(_ledger_calls(sim, "MARESFAULTS"))
    attempts = _attempts(conn, campaign_id)
    assert len(attempts) == 40 and len(ledger) == 40
    for attempt in attempts:
        (call,) = ledger[attempt["number"]]
        expected = LEDGER_TO_OUTCOME[call["outcome"]]
        if attempt["outcome"] == "unknown":
            # Only acceptable when we never learned any id of the call (bulk answer, every callback lost).
            assert attempt["request_uuid"] is None and attempt["call_uuid"] is None, attempt
            continue
        assert attempt["status"] == "completed", attempt
        assert attempt["outcome"] == expected, (attempt, call)
        assert (attempt["d_status"], attempt["d_outcome"]) == (FINAL_STATUS[expected], expected), attempt
        # Not regressed by a late ring or answer: the final status stays, times stay in order.
        assert attempt["provider_status"] not in ("ringing", "in-progress"), attempt
        assert attempt["call_uuid"] == call["call_uuid"] and attempt["request_uuid"] == call["request_uuid"]
        if attempt["answer_at"] and attempt["end_at"]:
            assert attempt["answer_at"] <= attempt["end_at"]
    unknown = sum(1 for a in attempts if a["outcome"] == "unknown")
    assert unknown <= 2, f"{unknown} attempts unknown: the reaper did not reconcile them"
    # Each carrier event stored once and applied once (reconciliations are stored under their own key).
    rows = conn.execute(
        """SELECT attempt_id, kind, count(*), count(applied_at) FROM call_event
           WHERE account_id = %s AND event_key NOT LIKE 'reconcile:%%' GROUP BY 1, 2""",
        (account_id,),
    ).fetchall()
    assert rows and all(n == 1 and applied == 1 for _, _, n, applied in rows), rows
    unapplied = conn.execute(
        "SELECT count(*) FROM call_event WHERE account_id = %s AND applied_at IS NULL", (account_id,)
    ).fetchone()
    assert unapplied == (0,)
    assert get_budgets().live_count(account_id) == 0, "a slot leaked"


def test_bulk_calls_are_mapped_to_the_right_destinations(env, conn) -> None:
    sim, _ = env
    account_id = _account(conn, sim, "plivo", "MARESBULK")
    campaign_id = load_campaign("bulk-map", numbers(60, start=300, area="646"))
    prepare_and_start(conn, campaign_id, account_id, provider_options=OPTIONS, retry_policy=NO_RETRIES)
    _wait_calls_over(sim, "MARESBULK", 60)
    wait_for(lambda: _open_count(conn, [campaign_id]) == 0, 20, "every attempt final")
    ledger = _by_number(_ledger_calls(sim, "MARESBULK"))
    attempts = _attempts(conn, campaign_id)
    batches = Counter(a["batch_id"] for a in attempts)
    assert max(batches.values()) > 1, "no bulk request was made; the test proves nothing"
    assert any(c["batch"] for calls in ledger.values() for c in calls)
    for attempt in attempts:
        (call,) = ledger[attempt["number"]]
        assert (attempt["request_uuid"], attempt["call_uuid"]) == (call["request_uuid"], call["call_uuid"])
        assert attempt["outcome"] == LEDGER_TO_OUTCOME[call["outcome"]]
    assert get_budgets().live_count(account_id) == 0


@pytest.mark.parametrize(
    ("outcome", "attempts", "status"),
    [
        ("busy", 2, "done"),
        ("answered", 1, "done"),
        ("failed", 2, "failed"),
        ("no_answer", 1, "done"),
    ],
)
def test_retry_policy_per_outcome(env, conn, outcome, attempts, status) -> None:
    sim, _ = env
    account_id = _account(conn, sim, "tryvox", "tvx-retry")
    before = len(_ledger_calls(sim, "tvx-retry"))
    start = {"busy": 500, "answered": 510, "failed": 520, "no_answer": 530}[outcome]
    campaign_id = load_campaign(f"retry-{outcome}", numbers(4, start=start, area="718"))
    sim.configure(
        {"outcomes": {**{k: 0 for k in ("answered", "busy", "no_answer", "failed", "machine")}, outcome: 100}}
    )
    try:
        policy = {
            "busy": {"delay_s": 1, "max_attempts": 2},
            "failed": {"delay_s": 1, "max_attempts": 2},
            "no_answer": {"delay_s": 1, "max_attempts": 1},
        }
        prepare_and_start(
            conn,
            campaign_id,
            account_id,
            provider_options={"ring_timeout": 10, "time_limit": 60},
            retry_policy=policy,
        )
        wait_for(
            lambda: conn.execute(
                "SELECT bool_and(status = %s) FROM destination WHERE campaign_id = %s", (status, campaign_id)
            ).fetchone()[0],
            40,
            f"every destination {status}",
        )
        _wait_calls_over(sim, "tvx-retry", before + 4 * attempts)
    finally:
        sim.configure({"outcomes": MIX})
    rows = _attempts(conn, campaign_id)
    per_destination = Counter(a["destination_id"] for a in rows)
    assert set(per_destination.values()) == {attempts}, per_destination
    assert {(a["d_status"], a["d_outcome"], a["attempts_made"]) for a in rows} == {
        (status, outcome, attempts)
    }
    assert {a["outcome"] for a in rows} == {outcome} and {a["status"] for a in rows} == {"completed"}
    assert len(_ledger_calls(sim, "tvx-retry")) - before == 4 * attempts, "dialed other than the policy says"
    assert get_budgets().live_count(account_id) == 0


def test_reaper_reconciles_lost_calls_with_the_carrier_or_marks_them_unknown(env, conn) -> None:
    sim, _ = env
    tryvox = _account(conn, sim, "tryvox", "tvx-reap")
    plivo = _account(conn, sim, "plivo", "MARESREAP")
    one_by_one = load_campaign("reap-tryvox", numbers(4, start=600, area="718"))
    bulk = load_campaign("reap-plivo", numbers(4, start=700, area="718"))
    sim.configure({"faults": {"drop": 1.0}, "callbacks": {"attempts": 1}})
    try:
        prepare_and_start(conn, one_by_one, tryvox, provider_options=OPTIONS, retry_policy=NO_RETRIES)
        prepare_and_start(conn, bulk, plivo, provider_options=OPTIONS, retry_policy=NO_RETRIES)
        _wait_calls_over(sim, "tvx-reap", 4)
        _wait_calls_over(sim, "MARESREAP", 4)
    finally:
        sim.configure({"faults": {"drop": 0.0}, "callbacks": {"attempts": 5}})
    assert _open_count(conn, [one_by_one, bulk]) == 8, "no callback should have reached us"
    assert get_budgets().live_count(tryvox) == 4 and get_budgets().live_count(plivo) == 4
    assert _expire_open_leases(conn, [one_by_one, bulk]) == 8
    wait_for(lambda: _open_count(conn, [one_by_one, bulk]) == 0, 30, "the reaper resolved every attempt")
    for campaign_id, auth_id in ((one_by_one, "tvx-reap"), (bulk, "MARESREAP")):
        ledger = _by_number(_ledger_calls(sim, auth_id))
        for attempt in _attempts(conn, campaign_id):
            (call,) = ledger[attempt["number"]]
            # The carrier can be asked: TryVox by call uuid; Plivo's Call retrieve by call uuid only (a
            # request uuid is not a call uuid there, and no callback brought one).
            if attempt["call_uuid"]:
                expected = LEDGER_TO_OUTCOME[call["outcome"]]
                assert (attempt["status"], attempt["outcome"]) == ("completed", expected), (attempt, call)
            else:
                assert (attempt["status"], attempt["outcome"]) == ("unknown", "unknown"), attempt
            assert attempt["d_status"] == FINAL_STATUS[attempt["outcome"]], attempt
    reconciled = conn.execute(
        "SELECT count(*) FROM call_attempt WHERE campaign_id = %s AND status = 'completed'", (one_by_one,)
    ).fetchone()
    assert reconciled == (4,), "TryVox answers carry the call id: every call can be reconciled"
    assert get_budgets().live_count(tryvox) == 0 and get_budgets().live_count(plivo) == 0, "slots leaked"
    ringing = conn.execute(
        "SELECT count(*) FROM destination WHERE campaign_id = ANY(%s) AND status = ANY(%s)",
        ([one_by_one, bulk], ["dialing", "ringing", "answered"]),
    ).fetchone()
    assert ringing == (0,)


def _start_unsent_attempt(conn: psycopg.Connection, account_id: int, number: str) -> tuple[int, int]:
    """A destination with an attempt committed (dialing) whose create answer has not come back yet."""
    campaign_id = load_campaign(f"early-{number}", [number])
    prepare_and_start(
        conn, campaign_id, account_id, start=False, provider_options=OPTIONS, retry_policy=NO_RETRIES
    )
    conn.execute("UPDATE destination SET status = 'queued' WHERE campaign_id = %s", (campaign_id,))
    campaign = dial_store.load_campaign(conn, campaign_id)
    assert campaign is not None
    dest_id = conn.execute("SELECT id FROM destination WHERE campaign_id = %s", (campaign_id,)).fetchone()[0]
    started = dial_store.start_attempts(
        conn,
        campaign=campaign,
        destinations=dial_store.queued_destinations(conn, [dest_id]),
        batch_id=uuid.uuid4(),
        lease_s=150,
    )
    assert len(started) == 1
    return started[0].attempt_id, dest_id


def _attempt_row(conn: psycopg.Connection, attempt_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM call_attempt WHERE id = %s", (attempt_id,)).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize("recorded_by", ["dialer", "sweep"])
def test_an_event_that_arrives_before_the_ids_is_applied_once_they_are_recorded(
    env, conn, recorded_by
) -> None:
    sim, stack = env
    account_id = _account(conn, sim, "voipbin", "vb-early")
    number = "+17185550800" if recorded_by == "dialer" else "+17185550801"
    attempt_id, dest_id = _start_unsent_attempt(conn, account_id, number)
    call_id = str(uuid.uuid4())
    # VoIPbin's webhook carries only the call id (no batch): nothing to match it to yet.
    body = voipbin_hangup(call_id, number, reason="busy")
    url = signed_url(stack.api_url, "voipbin", account_id, "status", secret=callback_url_secret(account_id))
    assert url.split("?")[0] == webhook_url("voipbin", account_id).split("?")[0]
    assert httpx.post(url, content=body, headers=voipbin_headers(None, body)).status_code == 200
    stored = wait_for(
        lambda: conn.execute(
            "SELECT id, applied_at FROM call_event WHERE call_uuid = %s", (call_id,)
        ).fetchone(),
        5,
        "event stored",
    )
    assert stored[1] is None
    assert _attempt_row(conn, attempt_id)["status"] == "dialing"
    # The create answer comes back: the dialer records the ids (as workers.dialing.chunk_rows.record_accepted
    # does).
    attempt_marks.record_sent(conn, [(attempt_id, call_id, call_id)])
    if recorded_by == "dialer":
        # The API's sweep may win the race (it skips rows the other holds locked, and so does this call):
        # whichever applies it, it is applied exactly once, which the checks below and the applied_at
        # guard make sure of.
        report = apply_events_for_ids(conn, [call_id])
        assert report.applied <= 1
    wait_for(lambda: _attempt_row(conn, attempt_id)["status"] == "completed", 8, "early event applied")
    attempt = _attempt_row(conn, attempt_id)
    assert (attempt["outcome"], attempt["call_uuid"]) == ("busy", call_id)
    dest = conn.execute("SELECT status, outcome FROM destination WHERE id = %s", (dest_id,)).fetchone()
    assert dest == ("done", "busy")
    applied = conn.execute(
        "SELECT attempt_id, applied_at IS NOT NULL FROM call_event WHERE call_uuid = %s", (call_id,)
    ).fetchone()
    assert applied == (attempt_id, True)
