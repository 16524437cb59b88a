"""Numbered runs of a campaign: begin one (whole list, or only what earlier runs left), end one at its end
time, close the ones whose campaign has finished, and report each run from its own attempts.

A completed campaign runs again only through here: the destinations a run takes are reset into a fresh
cycle by the one transition campaigns.states declares for it (RUN_RESETTABLE -> RUN_RESET_TARGET, written
by campaigns.store.operator.reset_for_rerun), their attempt count is remembered (`attempts_before_run`) so
the retry policy starts over, and every attempt carries the run number. Nothing reopens a final state any
other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from campaigns.errors import InvalidRequest, NotFound
from campaigns.readiness import require_ready_to_dial
from campaigns.schedules import OpenRun
from campaigns.states import RUN_STARTABLE_CAMPAIGN, CampaignState, DestinationStatus, RunTrigger, sql_in
from campaigns.store.operator import expire_run_leftovers, reset_for_rerun

C = CampaignState
D = DestinationStatus

# Campaigns dialed before runs were recorded (or started by hand) have run 1 in their rows, not in
# campaign_run: any destination that has left `pending` was in a run.
NEXT_RUN_NO = f"""
SELECT greatest(coalesce((SELECT max(run_no) FROM campaign_run WHERE campaign_id = %(c)s), 0),
                coalesce((SELECT max(run_no) FROM call_attempt WHERE campaign_id = %(c)s), 0),
                coalesce((SELECT max(run_no) FROM destination
                          WHERE campaign_id = %(c)s AND status <> '{D.PENDING.value}'), 0)) + 1"""
# A campaign that completed or was cancelled leaves its open run behind; the run scheduler closes it.
CLOSE_FINISHED_RUNS = f"""
UPDATE campaign_run r SET finished_at = now(), finish_reason = CASE c.state
    WHEN '{C.COMPLETED.value}' THEN 'every destination finished' ELSE 'campaign cancelled' END
FROM campaign c WHERE c.id = r.campaign_id AND r.finished_at IS NULL
    AND {sql_in("c.state", {C.COMPLETED, C.CANCELLED})} RETURNING r.campaign_id, r.run_no"""


@dataclass(frozen=True)
class RunStarted:
    campaign_id: int
    run_no: int
    destinations: int


@dataclass
class RunReport:
    """One run as `dialer campaign runs` shows it; outcomes are each destination's last attempt in the run."""

    run_no: int
    trigger: RunTrigger
    only_outcomes: list[str] | None
    destinations: int
    started_at: datetime
    ends_at: datetime | None
    finished_at: datetime | None
    finish_reason: str | None
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def not_dialed(self) -> int:
        return max(self.destinations - sum(self.outcomes.values()), 0)


def open_run(conn: psycopg.Connection, campaign_id: int) -> OpenRun | None:
    row = conn.execute(
        "SELECT run_no, ends_at FROM campaign_run WHERE campaign_id = %s AND finished_at IS NULL "
        "ORDER BY run_no DESC LIMIT 1",
        (campaign_id,),
    ).fetchone()
    return OpenRun(row[0], row[1]) if row else None


def record_first_run(conn: psycopg.Connection, campaign_id: int) -> None:
    """`campaign start` of a draft is run 1 of the whole list (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO campaign_run (campaign_id, run_no, trigger, destinations) "
        f"SELECT %(c)s, 1, '{RunTrigger.START.value}', "
        "(SELECT count(*) FROM destination WHERE campaign_id = %(c)s) "
        "WHERE NOT EXISTS (SELECT 1 FROM campaign_run WHERE campaign_id = %(c)s)",
        {"c": campaign_id},
    )


def start_run(
    conn: psycopg.Connection,
    campaign_id: int,
    *,
    only: list[str] | None,
    trigger: RunTrigger,
    ends_at: datetime | None = None,
) -> RunStarted:
    """Begin the next run: reset the chosen destinations into it and set the campaign running."""
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM campaign WHERE id = %s FOR UPDATE", (campaign_id,)).fetchone()
        if row is None:
            raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
        require_ready_to_dial(conn, row)
        if row["state"] not in RUN_STARTABLE_CAMPAIGN:
            cancelled = row["state"] == C.CANCELLED
            hint = "clone it: `dialer campaign clone`" if cancelled else "resume it, or wait for it to finish"
            raise InvalidRequest(
                f"campaign {campaign_id} is {row['state']}; a new run needs it draft or completed ({hint})"
            )
        if row["end_at"] is not None and row["end_at"] <= _db_now(conn):
            raise InvalidRequest(f"campaign {campaign_id} ended at {row['end_at']}: move its end_at first")
        current = open_run(conn, campaign_id)
        if current is not None:
            if row["state"] == C.RUNNING:
                raise InvalidRequest(f"campaign {campaign_id} is still in run {current.run_no}")
            _finish(conn, campaign_id, current.run_no, "every destination finished")
        run_row = conn.execute(NEXT_RUN_NO, {"c": campaign_id}).fetchone()
        run_no = int(run_row[0]) if run_row else 1
        taken = reset_for_rerun(conn, campaign_id=campaign_id, run_no=run_no, only=only)
        if taken == 0:  # raised inside the transaction: nothing above is kept, no empty run is recorded
            chosen = f"whose last outcome is {', '.join(only)}" if only else "to dial"
            raise InvalidRequest(f"campaign {campaign_id} has no destination {chosen}; no run was started")
        conn.execute(
            "INSERT INTO campaign_run (campaign_id, run_no, trigger, only_outcomes, destinations, ends_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (campaign_id, run_no, trigger, only, taken, ends_at),
        )
        conn.execute(
            f"UPDATE campaign SET state = '{C.RUNNING.value}', state_reason = %s, updated_at = now() "
            "WHERE id = %s",
            (f"run {run_no} ({trigger})", campaign_id),
        )
    return RunStarted(campaign_id, run_no, taken)


def end_run(conn: psycopg.Connection, campaign_id: int, run_no: int, reason: str) -> int:
    """The run's end time came: what it has not dialed yet expires; calls in progress finish and are
    recorded. Returns how many destinations expired."""
    with conn.transaction():
        expired = expire_run_leftovers(conn, campaign_id=campaign_id, run_no=run_no)
        _finish(conn, campaign_id, run_no, reason)
    return expired


def close_finished_runs(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """Open runs of campaigns that completed or were cancelled are finished; returns (campaign, run)."""
    rows = conn.execute(CLOSE_FINISHED_RUNS).fetchall()
    return [(r[0], r[1]) for r in rows]


def _finish(conn: psycopg.Connection, campaign_id: int, run_no: int, reason: str) -> None:
    conn.execute(
        "UPDATE campaign_run SET finished_at = now(), finish_reason = %s "
        "WHERE campaign_id = %s AND run_no = %s AND finished_at IS NULL",
        (reason, campaign_id, run_no),
    )


def _db_now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def list_runs(conn: psycopg.Connection, campaign_id: int) -> list[RunReport]:
    """Every run of a campaign, oldest first, with its attempts and outcomes."""
    if conn.execute("SELECT 1 FROM campaign WHERE id = %s", (campaign_id,)).fetchone() is None:
        raise NotFound(f"no campaign {campaign_id} (see `dialer campaign list`)")
    with conn.cursor(row_factory=dict_row) as cur:
        runs = cur.execute(
            "SELECT run_no, trigger, only_outcomes, destinations, started_at, ends_at, finished_at, "
            "finish_reason FROM campaign_run WHERE campaign_id = %s ORDER BY run_no",
            (campaign_id,),
        ).fetchall()
    reports = {r["run_no"]: RunReport(**{**r, "trigger": RunTrigger(r["trigger"])}) for r in runs}
    for run_no, outcome, count, attempts in conn.execute(
        "SELECT run_no, coalesce(outcome, 'in progress'), count(*), sum(tries) FROM ("
        "  SELECT DISTINCT ON (destination_id, run_no) destination_id, run_no, outcome,"
        "         count(*) OVER (PARTITION BY destination_id, run_no) AS tries"
        "  FROM call_attempt WHERE campaign_id = %s ORDER BY destination_id, run_no, attempt_no DESC) last "
        "GROUP BY 1, 2",
        (campaign_id,),
    ).fetchall():
        report = reports.get(run_no)
        if report is not None:
            report.outcomes[outcome] = int(count)
            report.attempts += int(attempts)
    return list(reports.values())


def run_as_dict(report: RunReport) -> dict[str, Any]:
    return {**report.__dict__, "not_dialed": report.not_dialed}
