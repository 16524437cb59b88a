"""Dialing through a Postgres outage (issue 18): Plivo bulk, 1,500 calls at 50 CPS, the database taken
away 10 s in; how long dialing stops and how soon it is at full rate again.

    python -m bench postgres-restart                        # 1,500 calls, the bench database away 2 s
    python -m bench postgres-restart --restart-postgres     # restart the server (a quiet machine only)
    python -m bench.postgres_restart_bench --calls 300 --outage-at 3   # shorter

Two kinds of outage:
- by default, the bench's own database only: `ALTER DATABASE ... ALLOW_CONNECTIONS false`, every backend of
  it ended with pg_terminate_backend (the dialer's connections fail as in a restart, with AdminShutdown),
  new connections refused for `--outage-s` (2 s), then allowed again. Other databases on the server are not
  disturbed, so this is the mode for a shared machine;
- `--restart-postgres`: `pg_ctlcluster --skip-systemctl-redirect <version> main restart`, the issue's
  scenario. It stops every database on the server: only on a machine nobody else is using.
"Accepting connections" is the moment the database is allowed again (by default) or the first moment a new
connection to it succeeds (restart).

4 worker processes of 8 threads, beat and the API; the simulator at speed 30, every call answered (calls
well under a second). Reported, from the simulator's record of each call: the longest stretch with no call
arriving from the outage's start on; seconds from Postgres accepting connections to full rate again (the
first 1-second window, starting at an arrival, holding at least 90% of the CPS) and the longest stretch
with no call after that (a stall after a first full second); the campaign's start to its
completion against the ideal (calls / CPS plus the longest call); calls dialed twice (must be 0) and the
destinations' final states; and how many database errors the workers logged. Conditions as bench.conditions
(`--priority`, `--busy-core`). Uses its own database (dialer_bench_pgrestart) and Redis prefix; Postgres
and Redis must be running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench import conditions
from bench.dialing_bench import APP_ID, CARRIER_RETRIES, OUT, prepare

AUTH_ID = "MAPGRESTART000000001"
SPEED = 30.0
OUTCOMES = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
            "talk_time": [1, 3], "ring_time": [1, 2]}
LONGEST_CALL_S = (3 + 2) / SPEED
FULL_RATE_SHARE = 0.9
# A connection ended under a query; a new one refused (psycopg_pool's warning).
DATABASE_ERRORS = ("AdminShutdown", "error connecting")


def longest_gap(times: Sequence[float], since: float) -> tuple[float, float]:
    """The longest stretch with no arrival from `since` on (from `since` to the first arrival, then between
    arrivals), and the time it ended. No arrival after `since`: (0, since)."""
    later = sorted(t for t in times if t >= since)
    best, ended = 0.0, since
    previous = since
    for t in later:
        if t - previous > best:
            best, ended = t - previous, t
        previous = t
    return best, ended


def full_rate_at(times: Sequence[float], after: float, rate: float, share: float = FULL_RATE_SHARE,
                 ) -> float | None:
    """The first arrival at or after `after` that opens a 1-second window holding at least share × rate
    arrivals; None if none does."""
    ordered = sorted(t for t in times if t >= after)
    hi = 0
    for lo, start in enumerate(ordered):
        hi = max(hi, lo)
        while hi < len(ordered) and ordered[hi] < start + 1.0:
            hi += 1
        if hi - lo >= share * rate:
            return start
    return None


def _database_outage(url: str, seconds: float) -> float:
    """Refuse new connections to the bench's database and end every backend of it, for `seconds`; the
    moment it accepts connections again."""
    database = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            deadline = time.monotonic() + seconds
            while True:  # again until the end: a backend that was connecting when it was refused
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        finally:
            conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    return time.time()


def _restart_server(url: str, timeout: float = 120.0) -> float:
    """Restart the whole Postgres server; the first moment a new connection to the database succeeds."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=1):
                return time.time()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _ask(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]] | None:
    """One query on a fresh connection; None while the database is away."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.Error:
        return None


def _wait_completed(url: str, campaign_id: int, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _ask(url, "SELECT state FROM campaign WHERE id = %s", campaign_id) == [("completed",)]:
            return time.monotonic()
        time.sleep(0.2)
    return None


def _database_errors(workdir: Path) -> dict[str, int]:
    """How often the workers' logs name each database error (tracebacks and retries)."""
    logs = "".join(p.read_text(errors="replace") for p in workdir.glob("worker*.log"))
    return {name: logs.count(name) for name in DATABASE_ERRORS}


def run(calls: int, rate: int, outage_at: float, outage_s: float, restart: bool,
        run_conditions: conditions.Conditions) -> dict[str, Any]:
    # Imported once prepare() has set this bench's environment (database, Redis prefix), as every bench does.
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from bench.precision_bench import retrying
    from campaigns.accounts import add_account
    from campaigns.config import get_settings
    from campaigns.db import connect
    from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
    from tests.sim_helpers import start_simulator

    url = get_settings().psycopg_url
    ideal = calls / rate + LONGEST_CALL_S
    account = {"provider": "plivo", "auth_id": AUTH_ID, "auth_token": "pw", "cps": rate,
               "max_concurrent": 10**6}
    config = {"accounts": [account], "outcomes": OUTCOMES, "callbacks": CARRIER_RETRIES}
    campaign_id = retrying("load", lambda: load_campaign("pgrestart", numbers(calls, area="917")))
    with (start_simulator(config, speed=SPEED, seed=13) as sim,
          running_stack(workers=4, threads=8) as stack):
        carrier_nice = sim.own_cores(run_conditions.carrier_nice) if run_conditions.carrier_nice else 0
        with connect(autocommit=True) as conn:
            account_id = add_account(conn, name="pgrestart", provider="plivo", auth_id=AUTH_ID,
                                     auth_token="pw", cps=rate, max_concurrent=10**6, base_url=sim.base_url,
                                     options={"application_id": APP_ID})
            started = time.monotonic()
            prepare_and_start(conn, campaign_id, account_id,
                              provider_options={"ring_timeout": 30, "time_limit": 60, "track_ringing": False})
        time.sleep(max(0.0, started + outage_at - time.monotonic()))
        outage_started = time.time()
        accepting = _restart_server(url) if restart else _database_outage(url, outage_s)
        print(f"outage: {round(accepting - outage_started, 2)} s", flush=True)
        completed = _wait_completed(url, campaign_id, timeout=6 * ideal + 120)
        sim.wait_idle(timeout=60)
        stats = sim.stats()["accounts"][AUTH_ID]
        times = [c["received_at"] for c in sim.ledger()["calls"] if c["account"] == AUTH_ID]
        errors = _database_errors(stack.workdir)
    statuses = dict(_ask(url, "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                         campaign_id) or [])
    gap, gap_ended = longest_gap(times, outage_started)
    full = full_rate_at(times, accepting, rate)
    total = completed - started if completed is not None else None
    return {
        "run": run_conditions.label(carrier_nice), "calls": calls, "rate": rate,
        "outage": "server restart" if restart else f"database connections refused {outage_s:g} s",
        "outage_at_s": outage_at, "outage_s": round(accepting - outage_started, 2),
        "calls_placed": len(times), "longest_gap_s": round(gap, 2),
        "longest_gap_ended_after_accepting_s": round(gap_ended - accepting, 2),
        "full_rate_after_accepting_s": round(full - accepting, 2) if full is not None else None,
        # A stall after the first full second (the first measure would not see it).
        "longest_gap_after_full_rate_s": round(longest_gap(times, full)[0], 2) if full is not None else None,
        "total_s": round(total, 1) if total is not None else None, "ideal_s": round(ideal, 1),
        "total_over_ideal": round(total / ideal, 2) if total is not None else None,
        "dialed_twice": stats["duplicate_dials"], "429s": stats["rejected_429"],
        "destinations_by_status": statuses, "worker_log_database_errors": errors,
    }


def _table(r: dict[str, Any], load: str) -> str:
    full = r["full_rate_after_accepting_s"]
    return "\n".join([
        f"load average at start: {load}; run: {r['run']}",
        "| calls at CPS | outage (at, length) | longest gap with 0 calls | full rate again after accepting "
        "(≤ 5 s); longest gap after it | total / ideal | dialed twice | destinations "
        "| database errors in the worker logs |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['calls']} at {r['rate']} | {r['outage']} ({r['outage_at_s']:g} s in, {r['outage_s']} s) "
        f"| {r['longest_gap_s']} s | {'never' if full is None else f'{full} s'}; "
        f"{r['longest_gap_after_full_rate_s']} s "
        f"| {r['total_s']} s / {r['ideal_s']} s = {r['total_over_ideal']}× | {r['dialed_twice']} "
        f"| {r['destinations_by_status']} | {r['worker_log_database_errors']} |",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--outage-at", type=float, default=10.0, help="seconds after the campaign's start")
    parser.add_argument("--outage-s", type=float, default=2.0,
                        help="how long the bench's database refuses connections (without --restart-postgres)")
    parser.add_argument("--restart-postgres", action="store_true",
                        help="restart the whole Postgres server instead: stops every database on it")
    parser.add_argument("--label", default="", help="a name for the saved JSON (bench/out)")
    conditions.add_arguments(parser)
    args = parser.parse_args(argv)
    run_conditions = conditions.from_arguments(args)
    prepare("dialer_bench_pgrestart")
    os.environ["DIALER_SENDER_NICE"] = str(run_conditions.sender_nice)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with conditions.busy_core(run_conditions.busy_core):
        result = run(args.calls, args.rate, args.outage_at, args.outage_s, args.restart_postgres,
                     run_conditions)
    result["load_average"], result["load_average_end"] = load, " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps(result))
    print(_table(result, load))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"postgres_restart_bench{'_' + args.label if args.label else ''}.json").write_text(
        json.dumps(result, indent=2))
    return 0 if result["dialed_twice"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
