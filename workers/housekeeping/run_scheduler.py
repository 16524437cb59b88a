"""The beat task's body for runs: close runs whose campaign finished, end runs at their end time, and
start the runs that schedules call for. The decisions are campaigns.schedules.plan_firing's (pure, given
`now`); this module reads the rows and applies them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from campaigns import runs
from campaigns.errors import InvalidRequest
from campaigns.schedule_store import due_schedules, record_firing
from campaigns.schedules import plan_firing
from campaigns.states import CampaignState, RunTrigger

log = logging.getLogger(__name__)


@dataclass
class RunSchedulerReport:
    closed: list[tuple[int, int]] = field(default_factory=list)  # (campaign, run) finished with its campaign
    ended: list[tuple[int, int]] = field(default_factory=list)  # (campaign, run) ended at their end time
    started: list[tuple[int, int]] = field(default_factory=list)  # (campaign, run) begun by a schedule
    notes: dict[int, str] = field(default_factory=dict)  # campaign -> why a due firing started nothing


def _end_overdue_runs(conn: psycopg.Connection, now: datetime, report: RunSchedulerReport) -> None:
    rows = conn.execute(
        "SELECT campaign_id, run_no FROM campaign_run WHERE finished_at IS NULL AND ends_at <= %s",
        (now,),
    ).fetchall()
    for campaign_id, run_no in rows:
        runs.end_run(conn, campaign_id, run_no, "its end time came")
        report.ended.append((campaign_id, run_no))


def run_scheduler_tick(conn: psycopg.Connection, now: datetime) -> RunSchedulerReport:
    """One pass at time `now` (the caller's clock; tests pass a frozen one)."""
    report = RunSchedulerReport()
    report.closed = runs.close_finished_runs(conn)
    _end_overdue_runs(conn, now, report)
    with conn.transaction():
        for schedule in due_schedules(conn, now):
            cid = schedule.campaign_id
            state_row = conn.execute("SELECT state FROM campaign WHERE id = %s", (cid,)).fetchone()
            state = state_row[0] if state_row else CampaignState.CANCELLED
            plan = plan_firing(schedule.view, runs.open_run(conn, cid), state, now)
            note = plan.note
            if plan.start_run:
                try:
                    started = runs.start_run(
                        conn, cid, only=schedule.only_outcomes, trigger=RunTrigger.SCHEDULE,
                        ends_at=plan.run_ends_at,
                    )
                    report.started.append((cid, started.run_no))
                    note = f"started run {started.run_no} with {started.destinations} destinations"
                except InvalidRequest as exc:
                    note = f"skipped: {exc}"
            if note:
                report.notes[cid] = note
                log.info("schedule of campaign %s: %s", cid, note)
            record_firing(conn, cid, plan.next_run_at, note)
    return report
