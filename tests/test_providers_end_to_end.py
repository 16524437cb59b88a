"""A small campaign on every provider, end to end: loader, dispatcher, Celery workers, the real adapters, the
simulator speaking each provider's seed (and, on a second account each, the richer shapes), the callback API
and the results consumer. Every destination's outcome is checked against the simulator's ledger, which knows
what really happened to each call, through what each shape lets a dialer know (see docs/PROVIDERS.md)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from campaigns.accounts import add_account
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start, running_stack
from tests.results_helpers import NO_RETRIES, attempt_rows, wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.callbacks.urls import webhook_url
from workers.ratelimit.process_budgets import get_budgets

pytestmark = pytest.mark.timeout(300)

PROVIDERS = ("plivo", "vobiz", "tryvox", "voipbin", "bandwidth")
SHAPES = ("seed", "rich")
PER_CAMPAIGN = 12
SPEED = 20.0
APP = "7fc9698a-b04a-468b-9e8f-91238c0d0086"
API_USER = "e2e-api-user"
ZONE = "Asia/Kolkata"  # the rich Plivo/Vobiz accounts' console zone: their callback times are local
MIX = {"answered": 40, "busy": 15, "no_answer": 15, "failed": 15, "machine": 15,
       "talk_time": [2, 10], "ring_time": [1, 4]}
OPTIONS = {"ring_timeout": 30, "time_limit": 60, "machine_detection": "true", "message": "Hello from e2e"}
OPEN = ("dialing", "sent", "ringing", "answered")
FINAL_DESTINATION = ("done", "failed", "unknown", "cancelled", "expired", "invalid", "dnc")


def auth_id(provider: str, shape: str) -> str:
    if provider == "bandwidth":
        return f"99{SHAPES.index(shape)}00001"
    return f"E2E{provider.upper()}{shape.upper()}"


def sim_account(provider: str, shape: str) -> dict[str, Any]:
    account: dict[str, Any] = {"provider": provider, "auth_id": auth_id(provider, shape),
                               "auth_token": f"{provider}-{shape}-token", "cps": 20, "max_concurrent": 200,
                               "callback_shape": shape}
    if provider == "bandwidth":
        account.update(api_username=API_USER, application_id=APP)
    if provider in ("plivo", "vobiz") and shape == "rich":
        account["time_zone"] = ZONE
    if provider == "voipbin":
        # VoIPbin takes no ring timeout. In its default reading the simulator rings until the dialer hangs up
        # at the campaign's ring timeout, in real seconds (tests/test_call_limits.py covers that); here the
        # two other readings end unanswered calls in carrier time: the callee gives up, or VoIPbin's dial
        # does.
        account["voipbin_ring_limit"] = "callee" if shape == "seed" else "dialout"
    return account


def expected_outcome(provider: str, shape: str, ledger_outcome: str) -> str:
    """What each provider's callbacks in this shape let the dialer know of what really happened."""
    if provider in ("plivo", "vobiz") and shape == "seed":
        # The seed's hangup: CallStatus "completed", AnswerTime only when answered, the machine parameter.
        return ledger_outcome if ledger_outcome in ("answered", "machine") else "no_answer"
    if provider == "tryvox" and shape == "seed" and ledger_outcome == "machine":
        return "answered"  # the seed gives no machine-detection result
    if provider == "voipbin" and ledger_outcome == "cancelled":
        return "no_answer"  # VoIPbin rings on: the dialer hung it up at the campaign's ring timeout
    return ledger_outcome


def options_for(provider: str) -> dict[str, Any]:
    """VoIPbin tells a machine only by hanging it up (hangup_reason amd): "true" is refused there."""
    return {**OPTIONS, "machine_detection": "hangup"} if provider == "voipbin" else OPTIONS


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": [sim_account(p, s) for p in PROVIDERS for s in SHAPES], "outcomes": MIX,
              "callbacks": {"attempts": 5, "backoff": 1.0}}
    with start_simulator(config, speed=SPEED, seed=21) as sim, running_stack(workers=2, threads=8) as stack:
        yield sim, stack


def _add_account(conn: psycopg.Connection, sim: RunningSimulator, provider: str, shape: str) -> int:
    options: dict[str, Any] = {}
    if provider == "bandwidth":
        options = {"application_id": APP, "api_username": API_USER}
    if provider in ("plivo", "vobiz") and shape == "rich":
        options = {"time_zone": ZONE}
    account_id = add_account(
        conn, name=f"e2e-{provider}-{shape}-{uuid.uuid4().hex[:6]}", provider=provider,
        auth_id=auth_id(provider, shape), auth_token=f"{provider}-{shape}-token", cps=20, max_concurrent=200,
        base_url=sim.base_url, options=options,
    )
    if provider == "voipbin":  # VoIPbin sends every event of the customer to one configured webhook
        hook = {"webhook_uri": webhook_url("voipbin", account_id)}
        sim.configure({"accounts": {auth_id(provider, shape): hook}})
    return account_id


def _settled(conn: psycopg.Connection, campaign_ids: list[int]) -> bool:
    row = conn.execute(
        """SELECT count(*) FILTER (WHERE NOT (d.status = ANY(%s))),
                  (SELECT count(*) FROM call_attempt a WHERE a.campaign_id = ANY(%s) AND a.status = ANY(%s))
           FROM destination d WHERE d.campaign_id = ANY(%s)""",
        (list(FINAL_DESTINATION), campaign_ids, list(OPEN), campaign_ids),
    ).fetchone()
    return row == (0, 0)


def test_every_provider_dials_a_small_campaign_end_to_end_and_matches_the_ledger(env: Any) -> None:
    sim, _ = env
    from campaigns.config import get_settings

    with psycopg.connect(get_settings().psycopg_url, autocommit=True) as conn:
        campaigns: dict[tuple[str, str], tuple[int, int]] = {}
        for i, (provider, shape) in enumerate((p, s) for p in PROVIDERS for s in SHAPES):
            account_id = _add_account(conn, sim, provider, shape)
            phones = numbers(PER_CAMPAIGN, start=i * 100, area="917")
            campaign_id = load_campaign(f"e2e-{provider}-{shape}", phones)
            campaigns[provider, shape] = campaign_id, account_id
        for (provider, _shape), (campaign_id, account_id) in campaigns.items():
            prepare_and_start(
                conn, campaign_id, account_id, provider_options=options_for(provider), retry_policy=NO_RETRIES
            )
        ids = [c for c, _ in campaigns.values()]
        wait_for(lambda: _settled(conn, ids), 180, "every destination of every provider final")
        sim.wait_idle(30)
        ledger = sim.ledger()["calls"]
        seen_outcomes: set[str] = set()
        for (provider, shape), (campaign_id, account_id) in campaigns.items():
            mine = [c for c in ledger if c["account"] == auth_id(provider, shape)]
            by_number: dict[str, list[dict[str, Any]]] = {}
            for call in mine:
                by_number.setdefault("+" + call["destination"].lstrip("+"), []).append(call)
            rows = attempt_rows(conn, campaign_id)
            assert len(rows) == PER_CAMPAIGN == len(by_number), (provider, shape, len(rows), len(by_number))
            for row in rows:
                (call,) = by_number[row["number"]]  # dialed exactly once
                seen_outcomes.add(call["outcome"])
                expected = expected_outcome(provider, shape, call["outcome"])
                where = (provider, shape, row["number"], call["outcome"])
                assert (row["status"], row["outcome"]) == ("completed", expected), (where, row)
                assert row["d_outcome"] == expected, where
                assert call["call_uuid"] in (row["call_uuid"], row["request_uuid"]), (where, row)
                if call["answered_at"] and row["answer_at"] is not None:
                    # Console-zone times (rich Plivo/Vobiz) read in the account's zone: the real instant.
                    real = datetime.fromtimestamp(call["answered_at"], row["answer_at"].tzinfo)
                    assert abs((row["answer_at"] - real).total_seconds()) < 2, (where, row["answer_at"], real)
            assert get_budgets().live_count(account_id) == 0, (provider, shape, "a slot leaked")
        assert {"answered", "busy", "no_answer", "failed", "machine"} <= seen_outcomes


@pytest.mark.parametrize("mode", ["string", "first", "list"])
def test_a_vobiz_bulk_whose_callbacks_are_all_lost_ends_final_and_is_never_dialed_twice(
        env: Any, mode: str) -> None:
    """Each reading of a bulk answer's request_uuid (Vobiz's page, Success Response (200 OK); simulator
    `bulk_request_uuid`): with every callback lost, the reaper asks with the ids the answer gave. A record
    found settles its destination by number; the rest end `unknown` (owned by the reaper past their lease).
    None is dialed again."""
    sim, _ = env
    from campaigns.config import get_settings

    sim_id = auth_id("vobiz", "seed")
    with psycopg.connect(get_settings().psycopg_url, autocommit=True) as conn:
        account_id = _add_account(conn, sim, "vobiz", "seed")
        phones = numbers(6, start=5000 + 10 * ("string", "first", "list").index(mode), area="917")
        campaign_id = load_campaign(f"e2e-vobiz-lost-{mode}", phones)
        mine = {p.lstrip("+") for p in phones}
        sim.configure({"faults": {"drop": 1.0}, "callbacks": {"attempts": 1},
                       "accounts": {sim_id: {"bulk_request_uuid": mode}}})
        try:
            prepare_and_start(
                conn, campaign_id, account_id, provider_options=OPTIONS, retry_policy=NO_RETRIES
            )

            def over() -> bool:
                calls = [c for c in sim.ledger()["calls"] if c["destination"].lstrip("+") in mine]
                return len(calls) == 6 and all(c["status"] == "completed" for c in calls)

            wait_for(over, 60, "6 calls over at the carrier")
        finally:
            sim.configure({"faults": {"drop": 0.0}, "callbacks": {"attempts": 5},
                           "accounts": {sim_id: {"bulk_request_uuid": "string"}}})
        rows = attempt_rows(conn, campaign_id)
        batch_sizes = Counter(r["batch_id"] for r in rows)
        assert max(batch_sizes.values()) > 1, "no bulk request was made; this proves nothing"
        kept = {str(b): ids for b, ids in conn.execute(
            "SELECT batch_id, request_uuids FROM provider_batch WHERE account_id = %s", (account_id,))}
        bulk_ids = sum(len(kept[str(b)]) for b, n in batch_sizes.items() if n > 1)
        assert bulk_ids == (sum(n for n in batch_sizes.values() if n > 1) if mode == "list"
                            else sum(1 for n in batch_sizes.values() if n > 1)), kept
        conn.execute("UPDATE call_attempt SET lease_expires_at = now() - interval '1 second' "
                     "WHERE campaign_id = %s", (campaign_id,))
        wait_for(lambda: _settled(conn, [campaign_id]), 60, "the reaper settled every attempt")
        ledger: dict[str, list[dict[str, Any]]] = {}
        for call in sim.ledger()["calls"]:
            if call["destination"].lstrip("+") in mine:
                ledger.setdefault("+" + call["destination"].lstrip("+"), []).append(call)
        for row in attempt_rows(conn, campaign_id):
            (call,) = ledger[row["number"]]  # dialed exactly once
            asked = {*kept.get(str(row["batch_id"]), [])}
            if batch_sizes[row["batch_id"]] == 1:
                asked.add(call["request_uuid"])  # a single request's id is its call's own
            if call["request_uuid"] in asked:
                # Found by an id the answer gave (the call record carries the cause: the finer outcome).
                expected = call["outcome"]
                assert (row["status"], row["outcome"], row["d_outcome"]) == ("completed", expected, expected)
                assert row["request_uuid"] == call["request_uuid"], "mapped back through the record's number"
            else:  # no id of its own ever reached us: unknown, final, never redialed
                assert (row["status"], row["outcome"], row["d_status"]) == ("unknown",) * 3, row
        assert get_budgets().live_count(account_id) == 0
