"""The limits a carrier cannot be told are enforced by the dialer (workers.housekeeping.call_limits): which
ones per provider and account reading, the pure deadlines, the send path's first check, and the owner's pass
against a simulator that rings on (VoIPbin with no ring limit; Vobiz reading `hangup_on_ring` as ringing and
talk). Real Postgres and Redis; the pass is called directly with the deadline already past."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis

from campaigns.accounts import AccountCredentials, add_account, load_account
from tests.engine_harness import load_campaign, numbers, prepare_and_start
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers import redis_keys
from workers.dialing.limit_checks import schedule_first_check
from workers.housekeeping.call_limits import (
    ASK_WINDOW_S,
    RECHECK_S,
    CallLimits,
    OpenCall,
    check_request,
    enforce_call_limits,
)
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.http import make_client
from workers.providers.registry import PROVIDERS, adapter_for

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
LIMITS = CallLimits(ring_timeout_s=30, time_limit_s=120)
RING_ONLY = CallLimits(ring_timeout_s=30, time_limit_s=120, enforced=frozenset({"ring"}))
_blocks = iter(range(40_000, 49_999, 10))


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _call(attempt_id: int, *, sent_s: float | None = None, answer_s: float | None = None,
          rang_s: float | None = None, answered: bool = False) -> OpenCall:
    return OpenCall(attempt_id, answered or answer_s is not None, _at(sent_s), _at(answer_s), "id", "id",
                    rang_at=_at(rang_s))


def _overdue(calls: list[OpenCall], limits: CallLimits, at_s: float) -> list[int]:
    return [c.attempt_id for c in check_request(calls, limits, T0 + timedelta(seconds=at_s)).overdue]


# Which limits the dialer enforces: the one trait, read per account.

def _account(provider: str, **options: Any) -> AccountCredentials:
    return AccountCredentials(1, provider, "id", "token", "https://carrier.test", options=options)


@pytest.mark.parametrize(("provider", "options", "enforced"), [
    ("voipbin", {}, {"ring", "time"}),  # no creation field takes either
    ("vobiz", {}, {"ring"}),  # default reading "call": hangup_on_ring carries ring + time limit
    ("vobiz", {"hangup_on_ring": "call"}, {"ring"}),
    ("vobiz", {"hangup_on_ring": "ring"}, set()),  # hangup_on_ring is the ring timeout: the carrier ends it
    ("plivo", {}, set()),
    ("tryvox", {}, set()),
    ("bandwidth", {}, set()),
])
def test_the_limits_the_dialer_enforces_follow_the_provider_and_the_accounts_reading(
        provider: str, options: dict[str, str], enforced: set[str]) -> None:
    assert adapter_for(provider).limits_the_dialer_enforces(_account(provider, **options)) == enforced
    assert set(PROVIDERS) == {"plivo", "vobiz", "tryvox", "voipbin", "bandwidth"}  # a new one is added here


def test_the_send_path_schedules_a_first_check_only_where_the_dialer_enforces_a_limit(
        redis_client: redis.Redis) -> None:
    sent = time.time()
    scheduled = {}
    for provider, options in [("voipbin", {}), ("vobiz", {}), ("vobiz", {"hangup_on_ring": "ring"}),
                              ("plivo", {})]:
        batch_id = uuid.uuid4()
        expected = provider != "plivo" and not options
        assert schedule_first_check(redis_client, adapter_for(provider), _account(provider, **options),
                                    batch_id, {"ring_timeout": 25}, sent) == expected
        score = redis_client.zscore(redis_keys.call_limit_checks(), str(batch_id))
        scheduled[(provider, bool(options))] = score
    assert scheduled == {("voipbin", False): sent + 25, ("vobiz", False): sent + 25, ("vobiz", True): None,
                         ("plivo", False): None}


# The pure deadlines.

def test_an_unanswered_call_is_due_at_its_ring_timeout_and_an_answered_one_at_its_time_limit() -> None:
    calls = [_call(1, sent_s=0), _call(2, sent_s=0, answer_s=10), _call(3, sent_s=5)]
    at_ring = check_request(calls, LIMITS, T0 + timedelta(seconds=30))
    assert [c.attempt_id for c in at_ring.overdue] == [1]
    # Asked to end, call 1 is looked at again shortly; call 3's ring timeout comes before that.
    assert at_ring.next_at == T0 + timedelta(seconds=35)
    assert _overdue(calls[1:2], LIMITS, 130) == [2]
    before = check_request(calls[1:2], LIMITS, T0 + timedelta(seconds=129))
    assert before.overdue == [] and before.next_at == T0 + timedelta(seconds=130)


def test_ringing_is_counted_from_the_ring_callback_when_one_came_else_from_the_send() -> None:
    rang_late = _call(1, sent_s=0, rang_s=8)  # a bulk's later call, placed at the carrier's pace
    assert _overdue([rang_late], LIMITS, 30) == []
    assert check_request([rang_late], LIMITS, T0 + timedelta(seconds=30)).next_at == _at(38)
    assert _overdue([rang_late], LIMITS, 38) == [1]
    assert _overdue([_call(2, sent_s=0)], LIMITS, 30) == [2]  # no ring callback: from the send


def test_calls_not_sent_yet_or_answered_without_a_time_are_never_left_unchecked() -> None:
    now = T0 + timedelta(seconds=10)
    unsent = check_request([_call(1)], LIMITS, now)
    assert unsent.overdue == [] and unsent.next_at == now + timedelta(seconds=RECHECK_S)
    # Answered at an unknown time: ring timeout + time limit after the send.
    assert _overdue([_call(2, sent_s=0, answered=True)], LIMITS, 150) == [2]
    assert check_request([], LIMITS, now).next_at is None  # nothing open: no further check


def test_a_limit_the_carrier_enforces_is_never_the_dialers() -> None:
    """Vobiz reading "call": the carrier ends an answered call at ring timeout + time limit; the dialer only
    ends the ringing."""
    answered = _call(1, sent_s=0, answer_s=10)
    assert _overdue([answered], RING_ONLY, 10_000) == []
    assert check_request([answered], RING_ONLY, T0 + timedelta(seconds=40)).next_at is None
    assert _overdue([_call(2, sent_s=0)], RING_ONLY, 30) == [2]
    nothing = CallLimits(30, 120, enforced=frozenset())
    assert check_request([_call(3, sent_s=0)], nothing, T0 + timedelta(seconds=60)).next_at is None


def test_a_call_asked_to_end_for_the_whole_window_is_left_to_the_reaper() -> None:
    ringing = [_call(1, sent_s=0)]
    last_ask = check_request(ringing, LIMITS, T0 + timedelta(seconds=30 + ASK_WINDOW_S - 1))
    assert [c.attempt_id for c in last_ask.overdue] == [1] and last_ask.next_at is not None
    after = check_request(ringing, LIMITS, T0 + timedelta(seconds=30 + ASK_WINDOW_S))
    assert after.overdue == [] and after.next_at is None  # its lease (the reaper) ends it


# The owner's pass against the simulator.

ACCOUNTS = {"voipbin": ("vb-limits", "vb-limits-token"), "vobiz": ("MZLIMITS", "vobiz-limits-token")}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    config = {"accounts": [{"provider": provider, "auth_id": auth_id, "auth_token": token, "cps": 50,
                            "max_concurrent": 50} for provider, (auth_id, token) in ACCOUNTS.items()],
              "outcomes": {"answered": 0, "busy": 0, "no_answer": 100, "failed": 0, "machine": 0,
                           "ring_time": [1, 2], "talk_time": [3, 4]}}
    with start_simulator(config, speed=50, seed=5) as sim:
        yield sim


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(autouse=True)
def empty_schedule(redis_client: redis.Redis) -> None:
    """Each test's pass sees only the requests it scheduled (an earlier test's come due seconds later)."""
    redis_client.delete(redis_keys.call_limit_checks())


class Campaign:
    """One destination's campaign on its own account of the simulator."""

    def __init__(self, conn: psycopg.Connection, sim: RunningSimulator, provider: str, *,
                 account_options: dict[str, Any] | None = None, ring_timeout: int = 20,
                 time_limit: int = 30) -> None:
        tag = uuid.uuid4().hex[:8]
        auth_id, token = ACCOUNTS[provider]
        self.account_id = add_account(conn, name=f"limits-{tag}", provider=provider, auth_id=auth_id,
                                      auth_token=token, cps=50, max_concurrent=50, base_url=sim.base_url,
                                      options=account_options or {})
        self.campaign_id = load_campaign(f"limits-{tag}", numbers(1, start=next(_blocks), area="646"))
        self.options = {"ring_timeout": ring_timeout, "time_limit": time_limit}
        prepare_and_start(conn, self.campaign_id, self.account_id, provider_options=self.options, start=False)
        row = conn.execute("SELECT id FROM destination WHERE campaign_id = %s",
                           (self.campaign_id,)).fetchone()
        assert row is not None
        self.destination_id: int = row[0]
        self.creds, _ = load_account(conn, self.account_id)
        self.conn = conn

    def place_call(self, destination: str = "+16465550101") -> str:
        """A call placed at the carrier through the adapter, as the dial chunk sends it: its call id."""
        urls = CallbackUrls(answer_url="http://127.0.0.1:9/a", hangup_url="http://127.0.0.1:9/h")
        call = OutboundCall(caller_id="+14155550100", destinations=[destination], callbacks=urls,
                            ring_timeout=self.options["ring_timeout"], time_limit=self.options["time_limit"])
        with make_client() as http:
            accepted = adapter_for(self.creds.provider).create_calls(http, self.creds, call)
        # VoIPbin names each call; a Vobiz request id is its call's id too (Success Response (200 OK)).
        call_id = accepted.calls[0].call_uuid if accepted.calls else None
        return call_id or accepted.request_uuids[0]

    def attempt(self, batch_id: uuid.UUID, call_id: str, *, status: str, sent_age_s: float,
                answer_age_s: float | None = None) -> int:
        """An open attempt of the request `batch_id`, sent `sent_age_s` ago (answered `answer_age_s` ago)."""
        row = self.conn.execute(
            "INSERT INTO call_attempt (destination_id, campaign_id, account_id, attempt_no, batch_id, "
            "status, sent_at, answer_at, lease_expires_at, request_uuid, call_uuid) VALUES (%s, %s, %s, "
            "(SELECT coalesce(max(attempt_no), 0) + 1 FROM call_attempt WHERE destination_id = %s), %s, %s, "
            "now() - make_interval(secs => %s), "
            "CASE WHEN %s::float IS NULL THEN NULL ELSE now() - make_interval(secs => %s::float) END, "
            "now() + interval '10 minutes', %s, %s) RETURNING id",
            (self.destination_id, self.campaign_id, self.account_id, self.destination_id, batch_id, status,
             sent_age_s, answer_age_s, answer_age_s, call_id, call_id)).fetchone()
        assert row is not None
        return int(row[0])

    def ring_callback(self, attempt_id: int, age_s: float) -> None:
        """The call's ring callback, stored `age_s` ago and attached to its attempt."""
        self.conn.execute(
            "INSERT INTO call_event (provider, account_id, event_key, kind, payload, received_at, "
            "applied_at, attempt_id) VALUES (%s, %s, %s, 'ring', '{}', "
            "now() - make_interval(secs => %s), now(), %s)",
            (self.creds.provider, self.account_id, f"ring-{uuid.uuid4()}", age_s, attempt_id))


def ledger_call(sim: RunningSimulator, call_id: str) -> dict[str, Any]:
    return next(c for c in sim.ledger()["calls"] if c["call_uuid"] == call_id)


def scheduled_in(client: redis.Redis, batch_id: uuid.UUID) -> float | None:
    """Seconds from now to the request's next check; None when it has none."""
    score = client.zscore(redis_keys.call_limit_checks(), str(batch_id))
    return None if score is None else score - time.time()


def test_an_unanswered_voipbin_call_is_hung_up_at_the_campaigns_ring_timeout(
        sim: RunningSimulator, conn: psycopg.Connection, redis_client: redis.Redis) -> None:
    campaign = Campaign(conn, sim, "voipbin")
    call_id = campaign.place_call()
    batch_id = uuid.uuid4()
    # Sent 21 s ago with a 20 s ring timeout; its first check is what the dial task schedules.
    campaign.attempt(batch_id, call_id, status="ringing", sent_age_s=21)
    assert schedule_first_check(redis_client, adapter_for("voipbin"), campaign.creds, batch_id,
                                campaign.options, time.time() - 21)
    wait_for(lambda: ledger_call(sim, call_id)["status"] == "ringing", 5, "the call ringing")
    time.sleep(0.5)  # 25 carrier seconds: the carrier itself does not end it
    assert ledger_call(sim, call_id)["status"] == "ringing"

    with make_client() as http:
        report = enforce_call_limits(conn, redis_client, http)
    assert report.hung_up == 1 and report.errors == []
    wait_for(lambda: ledger_call(sim, call_id)["status"] == "completed", 5, "the call ended")
    ended = ledger_call(sim, call_id)
    assert ended["hung_up_by_api"] and ended["outcome"] == "cancelled"
    # Still open in the database (its hangup callback went nowhere): looked at again shortly, not dropped.
    next_check = scheduled_in(redis_client, batch_id)
    assert next_check is not None and 0 < next_check <= RECHECK_S + 1


def test_an_answered_voipbin_call_is_hung_up_at_the_time_limit_and_not_before(
        sim: RunningSimulator, conn: psycopg.Connection, redis_client: redis.Redis) -> None:
    sim.configure({"outcomes": {"answered": 100, "no_answer": 0, "talk_time": [100_000, 100_000]}})
    try:
        campaign = Campaign(conn, sim, "voipbin")
        talking, too_long = campaign.place_call("+16465550102"), campaign.place_call("+16465550103")
        wait_for(lambda: {ledger_call(sim, c)["status"] for c in (talking, too_long)} == {"answered"}, 5,
                 "both calls answered")
    finally:
        sim.configure({"outcomes": {"answered": 0, "no_answer": 100, "talk_time": [3, 4]}})
    early, late = uuid.uuid4(), uuid.uuid4()
    campaign.attempt(early, talking, status="answered", sent_age_s=40, answer_age_s=20)
    campaign.attempt(late, too_long, status="answered", sent_age_s=50, answer_age_s=31)  # time limit 30 s
    for batch_id in (early, late):
        redis_client.zadd(redis_keys.call_limit_checks(), {str(batch_id): time.time() - 1})
    with make_client() as http:
        report = enforce_call_limits(conn, redis_client, http)
    assert report.hung_up == 1 and report.errors == []
    wait_for(lambda: ledger_call(sim, too_long)["status"] == "completed", 5, "the long call ended")
    assert ledger_call(sim, too_long)["hung_up_by_api"]
    assert ledger_call(sim, talking)["status"] == "answered"
    # The call within its limit is looked at again at its limit: 30 s after its answer.
    next_check = scheduled_in(redis_client, early)
    assert next_check is not None and 8 < next_check <= 11


def test_an_unanswered_vobiz_call_past_its_ring_timeout_is_hung_up_unless_the_account_reads_ring_only(
        sim: RunningSimulator, conn: psycopg.Connection, redis_client: redis.Redis) -> None:
    whole_call = Campaign(conn, sim, "vobiz", ring_timeout=5, time_limit=600)
    ring_only = Campaign(conn, sim, "vobiz", account_options={"hangup_on_ring": "ring"}, ring_timeout=5,
                         time_limit=600)
    swept, left = whole_call.place_call("+16465550104"), ring_only.place_call("+16465550105")
    batches = {uuid.uuid4(): (whole_call, swept), uuid.uuid4(): (ring_only, left)}
    for batch_id, (campaign, call_id) in batches.items():
        campaign.attempt(batch_id, call_id, status="ringing", sent_age_s=6)  # ring timeout 5 s
        schedule_first_check(redis_client, adapter_for("vobiz"), campaign.creds, batch_id, campaign.options,
                             time.time() - 6)
    assert [scheduled_in(redis_client, b) is not None for b in batches] == [True, False]
    with make_client() as http:
        report = enforce_call_limits(conn, redis_client, http)
    assert report.hung_up == 1 and not report.errors, report
    wait_for(lambda: ledger_call(sim, swept)["status"] == "completed", 10, "the swept call ended")
    assert ledger_call(sim, swept)["hung_up_by_api"] and ledger_call(sim, swept)["outcome"] == "cancelled"
    # The ring-only account asked the carrier for hangup_on_ring = its ring timeout: the carrier ends it.
    wait_for(lambda: ledger_call(sim, left)["status"] == "completed", 10, "the carrier ended it")
    assert not ledger_call(sim, left)["hung_up_by_api"]


def test_a_vobiz_call_that_rang_late_is_hung_up_at_its_ring_timeout_from_the_ring_callback(
        sim: RunningSimulator, conn: psycopg.Connection, redis_client: redis.Redis) -> None:
    campaign = Campaign(conn, sim, "vobiz", ring_timeout=5, time_limit=600)
    call_id = campaign.place_call("+16465550106")
    batch_id = uuid.uuid4()
    attempt_id = campaign.attempt(batch_id, call_id, status="ringing", sent_age_s=6)
    campaign.ring_callback(attempt_id, age_s=2)  # it began ringing 2 s ago: 3 s of its ring timeout left
    redis_client.zadd(redis_keys.call_limit_checks(), {str(batch_id): time.time() - 1})
    with make_client() as http:
        report = enforce_call_limits(conn, redis_client, http)
    assert report.checked >= 1 and report.hung_up == 0
    assert ledger_call(sim, call_id)["status"] == "ringing"
    next_check = scheduled_in(redis_client, batch_id)
    assert next_check is not None and 1.5 < next_check <= 3.5


def test_each_due_request_is_taken_by_one_pass_only(conn: psycopg.Connection,
                                                     redis_client: redis.Redis) -> None:
    batch_id = uuid.uuid4()
    redis_client.zadd(redis_keys.call_limit_checks(), {str(batch_id): time.time() - 1})
    with make_client() as http:
        first = enforce_call_limits(conn, redis_client, http)
        second = enforce_call_limits(conn, redis_client, http)
    assert first.checked >= 1 and second.checked == 0  # no open call: not scheduled again
    assert redis_client.zscore(redis_keys.call_limit_checks(), str(batch_id)) is None
    assert first.errors == []
