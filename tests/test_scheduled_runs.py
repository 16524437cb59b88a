"""Scheduled and recurring runs. The scheduling decision is pure and takes the clock as an argument, so
these tests freeze it; the dialing is real: Celery workers, beat, the API, Postgres, Redis, the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from campaigns import runs
from campaigns.accounts import add_account
from campaigns.errors import InvalidRequest
from campaigns.schedule_store import get_schedule, set_schedule
from campaigns.schedules import (
    CronSpec,
    InvalidSchedule,
    OpenRun,
    ScheduleView,
    next_firing,
    parse_cron_spec,
    parse_outcomes,
    plan_firing,
)
from tests.engine_harness import (
    Stack,
    campaign_state,
    load_campaign,
    numbers,
    prepare_and_start,
    running_stack,
)
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator
from workers.housekeeping.run_scheduler import run_scheduler_tick

LONDON_WEEKDAYS_10 = CronSpec("0 10 * * 1-5", "Europe/London")
# A frozen clock far in the future, so the real beat in the stack never finds these schedules due.
MONDAY_0959_LONDON = datetime(2031, 3, 3, 9, 59, tzinfo=UTC)  # GMT in March before the change


def test_cron_is_read_in_its_own_zone_across_the_dst_change() -> None:
    before = next_firing(LONDON_WEEKDAYS_10, datetime(2031, 3, 28, 12, tzinfo=UTC))  # Friday, GMT
    after = next_firing(LONDON_WEEKDAYS_10, before)  # Monday 31 March, BST
    assert before == datetime(2031, 3, 31, 9, tzinfo=UTC)  # 10:00 BST: Monday after the change
    assert after == datetime(2031, 4, 1, 9, tzinfo=UTC)
    assert next_firing(LONDON_WEEKDAYS_10, datetime(2031, 3, 7, 11, tzinfo=UTC)) == datetime(
        2031, 3, 10, 10, tzinfo=UTC
    )  # Friday after 10:00 -> Monday, still GMT


def test_bad_cron_zone_or_outcome_is_refused_with_its_name() -> None:
    assert parse_cron_spec("0 10 * * 1-5 Europe/London") == LONDON_WEEKDAYS_10
    for text, word in (("0 10 * *", "five fields"), ("0 25 * * *", "not a valid"),
                       ("0 10 * * * Mars/Olympus", "Mars/Olympus")):
        with pytest.raises(InvalidSchedule, match=word):
            parse_cron_spec(text)
    with pytest.raises(InvalidSchedule, match="answerd"):
        parse_outcomes("busy,answerd")


def test_plan_starts_one_run_for_missed_firings_and_skips_while_a_run_is_open() -> None:
    view = ScheduleView(LONDON_WEEKDAYS_10, next_run_at=datetime(2031, 3, 3, 10, tzinfo=UTC))
    three_days_late = datetime(2031, 3, 6, 12, tzinfo=UTC)
    plan = plan_firing(view, None, "completed", three_days_late)
    assert plan.start_run and plan.next_run_at == datetime(2031, 3, 7, 10, tzinfo=UTC)
    assert plan.run_ends_at == plan.next_run_at  # a run lasts until the next firing at most
    still_open = plan_firing(view, OpenRun(4, None), "running", three_days_late)
    assert not still_open.start_run and "run 4" in (still_open.note or "")
    ended = plan_firing(view, OpenRun(4, three_days_late - timedelta(seconds=1)), "running", three_days_late)
    assert ended.start_run
    not_yet = plan_firing(view, None, "completed", datetime(2031, 3, 3, 9, 59, tzinfo=UTC))
    assert not not_yet.start_run and not_yet.next_run_at == view.next_run_at
    until = ScheduleView(LONDON_WEEKDAYS_10, view.next_run_at, until_at=datetime(2031, 3, 4, tzinfo=UTC))
    last = plan_firing(until, None, "completed", datetime(2031, 3, 3, 10, 0, 5, tzinfo=UTC))
    assert last.start_run and last.next_run_at is None and last.run_ends_at is None
    assert plan_firing(view, None, "cancelled", three_days_late).next_run_at is None


def _mine(pairs: list[tuple[int, int]], campaign_id: int) -> list[tuple[int, int]]:
    """The (campaign, run) pairs of this test's campaign: the session's database holds other modules'
    schedules too, which a tick on a frozen clock may also fire."""
    return [pair for pair in pairs if pair[0] == campaign_id]


def test_a_run_ends_at_its_end_time_and_the_next_firing_dials_the_whole_list_afresh(
    database_url: str, redis_client: Any
) -> None:
    """No workers here: the run scheduler alone, on a frozen clock (runs before the module's stack starts)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        account_id = add_account(conn, name="runs-end", provider="plivo", auth_id="MAEND", auth_token="t",
                                 cps=5, max_concurrent=5, base_url="http://127.0.0.1:9")
        campaign_id = load_campaign("run-end", numbers(3, start=7500))
        prepare_and_start(conn, campaign_id, account_id, start=False)
        set_schedule(conn, campaign_id, LONDON_WEEKDAYS_10, only=None, until_at=None,
                     run_for=timedelta(hours=1), now=MONDAY_0959_LONDON)
        firing = datetime(2031, 3, 3, 10, 0, 1, tzinfo=UTC)
        assert _mine(run_scheduler_tick(conn, firing).started, campaign_id) == [(campaign_id, 1)]
        assert runs.open_run(conn, campaign_id) == OpenRun(1, datetime(2031, 3, 3, 11, 0, 1, tzinfo=UTC))
        assert _mine(run_scheduler_tick(conn, firing + timedelta(minutes=59)).ended, campaign_id) == []
        report = run_scheduler_tick(conn, firing + timedelta(hours=1, seconds=1))
        assert _mine(report.ended, campaign_id) == [(campaign_id, 1)]
        assert runs.open_run(conn, campaign_id) is None
        statuses = conn.execute("SELECT DISTINCT status FROM destination WHERE campaign_id = %s",
                                (campaign_id,)).fetchall()
        assert statuses == [("expired",)]  # nothing was dialed within the run: it expired, not left pending
        tuesday = run_scheduler_tick(conn, datetime(2031, 3, 4, 10, 0, 1, tzinfo=UTC))
        assert _mine(tuesday.started, campaign_id) == [(campaign_id, 2)]
        pending = conn.execute("SELECT count(*) FROM destination WHERE campaign_id = %s "
                               "AND status = 'pending' AND run_no = 2", (campaign_id,)).fetchone()
        assert pending == (3,)  # the whole list, afresh
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
    # The beat task is the same pass with the real clock: nothing is due in 2026 for a 2031 schedule.
    from workers.runtime.tasks import start_scheduled_runs

    result = start_scheduled_runs()
    assert result is not None and result["started"] == [] and result["ended"] == []


SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MARUNS", "auth_token": "tok-runs", "cps": 50, "max_concurrent": 200},
]
HALF_BUSY = {"answered": 50, "busy": 50, "no_answer": 0, "failed": 0, "machine": 0,
             "talk_time": [1, 3], "ring_time": [1, 2]}


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    config = {"accounts": SIM_ACCOUNTS, "outcomes": HALF_BUSY}
    with start_simulator(config, speed=20.0, seed=5) as sim, running_stack(workers=2, threads=8) as stack:
        yield sim, stack


@pytest.fixture()
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _finished(conn: psycopg.Connection, campaign_id: int) -> bool:
    return campaign_state(conn, campaign_id) == "completed"


def _dialed_in_run(conn: psycopg.Connection, campaign_id: int, run_no: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT DISTINCT ON (d.number) d.number, a.outcome FROM call_attempt a "
        "JOIN destination d ON d.id = a.destination_id WHERE a.campaign_id = %s AND a.run_no = %s "
        "ORDER BY d.number, a.attempt_no DESC",
        (campaign_id, run_no),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_a_schedule_starts_two_runs_and_the_second_dials_only_what_the_first_left(
    env: tuple[RunningSimulator, Stack], conn: psycopg.Connection
) -> None:
    sim, _ = env
    account_id = add_account(conn, name="runs", provider="plivo", auth_id="MARUNS", auth_token="tok-runs",
                             cps=50, max_concurrent=200, base_url=sim.base_url)
    phones = numbers(24, start=7000)
    campaign_id = load_campaign("scheduled", phones)
    # Busy and no answer are final at once (one try per run): what a run leaves is exactly those. (The
    # seed's minimal Plivo hangup may report a busy line as no answer: either is "left".)
    one_try = {"delay_s": 0, "max_attempts": 1}
    prepare_and_start(conn, campaign_id, account_id, retry_policy={"busy": one_try, "no_answer": one_try},
                      start=False)
    set_schedule(conn, campaign_id, LONDON_WEEKDAYS_10, only=["busy", "no_answer"], until_at=None,
                 run_for=None, now=MONDAY_0959_LONDON)
    assert get_schedule(conn, campaign_id).next_run_at == datetime(2031, 3, 3, 10, tzinfo=UTC)  # type: ignore[union-attr]
    # Not yet due: nothing starts.
    assert _mine(run_scheduler_tick(conn, MONDAY_0959_LONDON).started, campaign_id) == []

    monday = datetime(2031, 3, 3, 10, 0, 2, tzinfo=UTC)
    # A draft's first run: the whole list.
    assert _mine(run_scheduler_tick(conn, monday).started, campaign_id) == [(campaign_id, 1)]
    wait_for(lambda: _finished(conn, campaign_id), timeout=90, what="run 1 to finish")
    first = _dialed_in_run(conn, campaign_id, 1)
    assert set(first) == set(phones)
    left = {n for n, outcome in first.items() if outcome in ("busy", "no_answer")}
    assert left and len(left) < len(phones)  # the seeded mix gives both outcomes

    with pytest.raises(InvalidRequest, match="draft or completed"):  # cancelled/paused campaigns do not rerun
        conn.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
        try:
            runs.start_run(conn, campaign_id, only=None, trigger="rerun")
        finally:
            conn.execute("UPDATE campaign SET state = 'completed' WHERE id = %s", (campaign_id,))

    tuesday = datetime(2031, 3, 4, 10, 0, 2, tzinfo=UTC)
    report = run_scheduler_tick(conn, tuesday)
    assert _mine(report.started, campaign_id) == [(campaign_id, 2)]
    # Run 1 was closed when its campaign completed: by this tick, or already by the stack's own beat.
    closed = conn.execute("SELECT finish_reason FROM campaign_run WHERE campaign_id = %s AND run_no = 1",
                          (campaign_id,)).fetchone()
    assert closed == ("every destination finished",)
    wait_for(lambda: _finished(conn, campaign_id), timeout=90, what="run 2 to finish")
    second = _dialed_in_run(conn, campaign_id, 2)
    assert set(second) == left  # only what run 1 left, each dialed once more
    counted = conn.execute("SELECT DISTINCT attempts_made - attempts_before_run FROM destination "
                           "WHERE campaign_id = %s AND run_no = 2", (campaign_id,)).fetchall()
    assert counted == [(1,)]  # the retry policy counts run 2's own tries, not run 1's
    placed = ["+" + c["destination"].lstrip("+") for c in sim.ledger()["calls"] if c["account"] == "MARUNS"]
    assert sorted(placed) == sorted(phones + sorted(left))  # the carrier's witness: nobody else called twice

    listed = {r.run_no: r for r in runs.list_runs(conn, campaign_id)}
    assert listed[1].destinations == len(phones) and sum(listed[1].outcomes.values()) == len(phones)
    assert listed[2].trigger == "schedule" and listed[2].only_outcomes == ["busy", "no_answer"]
    assert listed[2].destinations == len(left) and listed[2].attempts == len(left)
    assert get_schedule(conn, campaign_id).next_run_at == datetime(2031, 3, 5, 10, tzinfo=UTC)  # type: ignore[union-attr]
