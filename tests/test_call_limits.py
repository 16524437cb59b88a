"""Where the carrier takes no ring timeout or time limit (VoIPbin), the dialer ends each call at them itself:
one scheduled check per request (workers.housekeeping.call_limits), against a simulator that rings for ever
unless hung up. Real Postgres and Redis; the pass is called directly with the deadline already past."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis

from campaigns.accounts import AccountCredentials, add_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers import redis_keys
from workers.dialing.limit_checks import schedule_first_check
from workers.housekeeping.call_limits import (
    RECHECK_S,
    CallLimits,
    OpenCall,
    check_request,
    enforce_call_limits,
)
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.http import make_client
from workers.providers.registry import adapter_for

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
LIMITS = CallLimits(ring_timeout_s=30, time_limit_s=120)
_blocks = iter(range(40_000, 49_999, 10))


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _call(attempt_id: int, *, sent_s: float | None = None, answer_s: float | None = None,
          answered: bool = False) -> OpenCall:
    return OpenCall(attempt_id, answered or answer_s is not None, _at(sent_s), _at(answer_s), "id", "id")


def test_an_unanswered_call_is_due_at_its_ring_timeout_and_an_answered_one_at_its_time_limit() -> None:
    calls = [_call(1, sent_s=0), _call(2, sent_s=0, answer_s=10), _call(3, sent_s=5)]
    at_ring = check_request(calls, LIMITS, T0 + timedelta(seconds=30))
    assert [c.attempt_id for c in at_ring.overdue] == [1]
    # Asked to end, call 1 is looked at again shortly; call 3's ring timeout comes before that.
    assert at_ring.next_at == T0 + timedelta(seconds=35)
    at_limit = check_request(calls[1:2], LIMITS, T0 + timedelta(seconds=130))
    assert [c.attempt_id for c in at_limit.overdue] == [2]
    before = check_request(calls[1:2], LIMITS, T0 + timedelta(seconds=129))
    assert before.overdue == [] and before.next_at == T0 + timedelta(seconds=130)


def test_calls_not_sent_yet_or_answered_without_a_time_are_never_left_unchecked() -> None:
    now = T0 + timedelta(seconds=10)
    unsent = check_request([_call(1)], LIMITS, now)
    assert unsent.overdue == [] and unsent.next_at == now + timedelta(seconds=RECHECK_S)
    answered = check_request([_call(2, sent_s=0, answered=True)], LIMITS, T0 + timedelta(seconds=150))
    assert [c.attempt_id for c in answered.overdue] == [2]  # ring timeout + time limit after the send
    assert check_request([], LIMITS, now).next_at is None  # nothing open: no further check


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    config = {"accounts": [{"provider": "voipbin", "auth_id": "vb-limits", "auth_token": "vb-limits-token",
                            "cps": 50, "max_concurrent": 50}],
              "outcomes": {"answered": 0, "busy": 0, "no_answer": 100, "failed": 0, "machine": 0,
                           "ring_time": [1, 2], "talk_time": [3, 4]}}
    with start_simulator(config, speed=50, seed=5) as sim:
        yield sim


def _campaign(conn: psycopg.Connection, base_url: str) -> tuple[int, int, int]:
    tag = uuid.uuid4().hex[:8]
    account_id = add_account(conn, name=f"vb-limits-{tag}", provider="voipbin", auth_id="vb-limits",
                             auth_token="vb-limits-token", cps=50, max_concurrent=50, base_url=base_url)
    campaign_id = load_campaign(f"vb-limits-{tag}", numbers(1, start=next(_blocks), area="646"))
    prepare_and_start(conn, campaign_id, account_id, provider_options={"ring_timeout": 20, "time_limit": 30})
    row = conn.execute("SELECT id FROM destination WHERE campaign_id = %s", (campaign_id,)).fetchone()
    assert row is not None
    return account_id, campaign_id, row[0]


def _attempt(conn: psycopg.Connection, ids: tuple[int, int, int], batch_id: uuid.UUID, call_id: str, *,
             status: str, sent_age_s: float, answer_age_s: float | None = None) -> int:
    account_id, campaign_id, destination_id = ids
    row = conn.execute(
        "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, status, "
        "sent_at, answer_at, lease_expires_at, request_uuid, call_uuid) VALUES (%s, %s, %s, "
        "(SELECT coalesce(max(attempt_no), 0) + 1 FROM call_attempt WHERE destination_id = %s), %s, %s, "
        "now() - make_interval(secs => %s), "
        "CASE WHEN %s::float IS NULL THEN NULL ELSE now() - make_interval(secs => %s::float) END, "
        "now() + interval '10 minutes', %s, %s) RETURNING id",
        (destination_id, campaign_id, account_id, destination_id, batch_id, status, sent_age_s, answer_age_s,
         answer_age_s, call_id, call_id)).fetchone()
    assert row is not None
    return int(row[0])


def _ledger_call(sim: RunningSimulator, call_id: str) -> dict[str, Any]:
    return next(c for c in sim.ledger()["calls"] if c["call_uuid"] == call_id)


def test_an_unanswered_voipbin_call_is_hung_up_at_the_campaigns_ring_timeout(
        sim: RunningSimulator, database_url: str, redis_client: redis.Redis) -> None:
    creds = AccountCredentials(account_id=1, provider="voipbin", auth_id="vb-limits",
                               auth_token="vb-limits-token", base_url=sim.base_url)
    urls = CallbackUrls(answer_url="http://127.0.0.1:9/a", hangup_url="http://127.0.0.1:9/h")
    call = OutboundCall(caller_id="+14155550100", destinations=["+16465550101"], callbacks=urls,
                        ring_timeout=20, time_limit=30)
    with psycopg.connect(database_url, autocommit=True) as conn, make_client() as http:
        ids = _campaign(conn, sim.base_url)
        call_id = adapter_for("voipbin").create_calls(http, creds, call).calls[0].call_uuid
        assert call_id is not None
        batch_id = uuid.uuid4()
        # Sent 21 s ago with a 20 s ring timeout; its first check is what the dial task schedules.
        _attempt(conn, ids, batch_id, call_id, status="ringing", sent_age_s=21)
        schedule_first_check(redis_client, batch_id, {"ring_timeout": 20}, time.time() - 21)
        wait_for(lambda: _ledger_call(sim, call_id)["status"] == "ringing", 5, "the call ringing")
        time.sleep(0.5)  # 25 carrier seconds: the carrier itself does not end it
        assert _ledger_call(sim, call_id)["status"] == "ringing"

        report = enforce_call_limits(conn, redis_client, http)
        assert report.hung_up == 1 and report.errors == []
        wait_for(lambda: _ledger_call(sim, call_id)["status"] == "completed", 5, "the call ended")
        ended = _ledger_call(sim, call_id)
        assert ended["hung_up_by_api"] and ended["outcome"] == "cancelled"
        # Still open in the database (its hangup callback went nowhere): looked at again shortly, not dropped.
        score = redis_client.zscore(redis_keys.call_limit_checks(), str(batch_id))
        assert score is not None and 0 < score - time.time() <= RECHECK_S + 1


def test_an_answered_voipbin_call_is_hung_up_at_the_time_limit_and_not_before(
        sim: RunningSimulator, database_url: str, redis_client: redis.Redis) -> None:
    asked: list[str] = []

    def carrier(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json={"id": request.url.path.split("/")[3], "status": "terminating"})

    with psycopg.connect(database_url, autocommit=True) as conn, \
            make_client(transport=httpx.MockTransport(carrier)) as http:
        ids = _campaign(conn, "https://api.voipbin.test")
        early, late = uuid.uuid4(), uuid.uuid4()
        _attempt(conn, ids, early, "call-talking", status="answered", sent_age_s=40, answer_age_s=20)
        _attempt(conn, ids, late, "call-too-long", status="answered", sent_age_s=50, answer_age_s=31)
        for batch_id in (early, late):
            redis_client.zadd(redis_keys.call_limit_checks(), {str(batch_id): time.time() - 1})
        report = enforce_call_limits(conn, redis_client, http)
        assert asked == ["/v1.0/calls/call-too-long/hangup"] and report.hung_up == 1
        # The call within its limit is looked at again at its limit: 30 s after its answer.
        score = redis_client.zscore(redis_keys.call_limit_checks(), str(early))
        assert score is not None and 8 < score - time.time() <= 11


def test_each_due_request_is_taken_by_one_pass_only(database_url: str, redis_client: redis.Redis) -> None:
    batch_id = uuid.uuid4()
    redis_client.zadd(redis_keys.call_limit_checks(), {str(batch_id): time.time() - 1})
    with psycopg.connect(database_url, autocommit=True) as conn, make_client() as http:
        first = enforce_call_limits(conn, redis_client, http)
        second = enforce_call_limits(conn, redis_client, http)
    assert first.checked >= 1 and second.checked == 0  # no open call: not scheduled again
    assert redis_client.zscore(redis_keys.call_limit_checks(), str(batch_id)) is None
    assert json.dumps(first.errors) == "[]"
