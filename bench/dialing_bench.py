"""Dialing engine benchmark: calls/s achieved, the most calls in any 1-second window and 429s, at budgets
of 20 and 200 CPS with 4 worker processes, beside a naive dialer on Celery's per-worker `rate_limit`;
then the ceiling: the highest rate this machine sustains end to end (dial + callbacks applied).

    python -m bench.dialing_bench                       # both budgets, baseline, ceiling
    python -m bench.dialing_bench --rates 20 --no-ceiling

Uses its own database (dialer_bench) and Redis prefix; Postgres and Redis must be running.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
APP_ID = "7fc9698a-b04a-468b-9e8f-91238c0d0086"
API_USER = "bench-api-user"  # Bandwidth authenticates an API user, not the account id
# The simulator scales callback retry backoff by --speed; give it enough attempts and a backoff that is
# still about a second of real time, as a real carrier's would be.
CARRIER_RETRIES = {"attempts": 8, "backoff": 40.0, "backoff_factor": 2.0, "timeout": 10.0}
ALL_ANSWERED = {
    "answered": 100,
    "busy": 0,
    "no_answer": 0,
    "failed": 0,
    "machine": 0,
    "talk_time": [1, 3],
    "ring_time": [1, 2],
}


def _environment() -> None:
    os.environ.setdefault("DIALER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/dialer_bench")
    os.environ["DIALER_REDIS_PREFIX"] = f"bench-{secrets.token_hex(3)}"
    os.environ.setdefault("DIALER_SECRET_KEY", "bench-secret-for-benchmarks-only-0123")
    # A local run against the simulator, said explicitly: unset, the environment is production.
    os.environ.setdefault("DIALER_ENVIRONMENT", "development")


def prepare(database: str) -> None:
    """A benchmark's own environment: its database (unless DIALER_DATABASE_URL names one), a fresh Redis
    prefix, this repository importable, and the database created empty."""
    os.environ.setdefault("DIALER_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}")
    _environment()
    sys.path.insert(0, str(REPO))
    _fresh_database()


def _fresh_database() -> None:
    import psycopg

    from campaigns.config import get_settings
    from campaigns.db import init_database

    url = get_settings().psycopg_url
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    init_database(url)


def _window_stats(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """What the carrier saw. `calls_per_s` is the mean over the whole 1-second bins from the first arrival
    (the last, partial bin left out): (n - 1) / span would credit a run of bulks arriving all at once,
    1.04 s apart, with more than its budget."""
    from tests.engine_harness import max_in_window

    times = sorted(c["received_at"] for c in calls)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    full_bins = int(span)
    in_full_bins = sum(1 for t in times if t - times[0] < full_bins) if full_bins else 0
    return {
        "calls": len(times),
        "calls_per_s": round(in_full_bins / full_bins, 1) if full_bins else None,
        "max_in_1s_window": max_in_window(times),
        "span_s": round(span, 2),
    }


def _run_campaign(
    provider: str,
    auth_id: str,
    rate: int,
    count: int,
    *,
    speed: float,
    workers: int,
    area: str,
    timeout_s: float,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """One campaign of `count` calls through the whole engine against a simulated account of exactly
    `rate` CPS: (window stats of what the carrier received, the carrier's account stats, seconds to done)."""
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from campaigns.accounts import add_account
    from campaigns.db import connect
    from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
    from tests.polling import wait_for
    from tests.sim_helpers import start_simulator

    sim_account = {
        "provider": provider,
        "auth_id": auth_id,
        "auth_token": "pw",
        "cps": rate,
        "max_concurrent": 10**6,
        "application_id": APP_ID,
        "api_username": API_USER,
    }
    config = {"accounts": [sim_account], "outcomes": ALL_ANSWERED, "callbacks": CARRIER_RETRIES}
    with start_simulator(config, speed=speed, seed=5) as sim, running_stack(workers=workers, threads=8):
        with connect() as conn:
            account_id = add_account(
                conn,
                name=f"bench-{provider}-{rate}-{count}",
                provider=provider,
                auth_id=auth_id,
                auth_token="pw",
                cps=rate,
                max_concurrent=10**6,
                base_url=sim.base_url,
                options={"application_id": APP_ID, "api_username": API_USER},
            )
            conn.commit()
        campaign_id = load_campaign(f"bench-{provider}-{rate}", numbers(count, start=0, area=area))
        started = time.monotonic()
        with connect() as conn:
            prepare_and_start(
                conn,
                campaign_id,
                account_id,
                provider_options={"ring_timeout": 30, "time_limit": 60, "track_ringing": False},
            )
            wait_for(
                lambda: (
                    conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
                    == ("completed",)
                ),
                timeout=timeout_s,
                interval=0.5,
                what="campaign completed",
            )
        elapsed = time.monotonic() - started
        stats = sim.stats()["accounts"][auth_id]
        calls = [c for c in sim.ledger()["calls"] if c["account"] == auth_id]
    return _window_stats(calls), stats, elapsed


def run_engine(rate: int, seconds: float) -> dict[str, Any]:
    """Our engine: 4 worker processes, Bandwidth (one destination per request)."""
    result, stats, elapsed = _run_campaign(
        "bandwidth",
        "5550001",
        rate,
        int(rate * seconds),
        speed=30,
        workers=4,
        area="646",
        timeout_s=seconds * 6 + 60,
    )
    return {
        **result,
        "rate": rate,
        "dialer": "engine (bandwidth)",
        "429s": stats["rejected_429"],
        "duplicates": stats["duplicate_dials"],
        "complete_s": round(elapsed, 1),
    }


def run_naive(rate: int, seconds: float, workers: int = 4) -> dict[str, Any]:
    """Celery's built-in task rate_limit, `rate`/s on each of 4 workers, same carrier limit."""
    from tests.engine_harness import numbers
    from tests.sim_helpers import start_simulator

    count = int(rate * seconds)
    config = {
        "accounts": [
            {
                "provider": "bandwidth",
                "auth_id": "5550002",
                "auth_token": "pw",
                "cps": rate,
                "max_concurrent": 100000,
                "application_id": APP_ID,
                "api_username": API_USER,
            }
        ],
        "outcomes": ALL_ANSWERED,
        "callbacks": CARRIER_RETRIES,
    }
    env = {**os.environ, "BENCH_RATE_LIMIT": f"{rate}/s"}
    with start_simulator(config, speed=30, seed=5) as sim:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "bench.naive_celery",
                    "worker",
                    "-P",
                    "threads",
                    "-c",
                    "8",
                    "-n",
                    f"naive{i}-{os.getpid()}@%h",
                    "-l",
                    "ERROR",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(workers)
        ]
        try:
            from bench.naive_celery import place_call

            time.sleep(3)  # workers up
            for number in numbers(count, start=0, area="718"):
                place_call.apply_async(args=(sim.base_url, "5550002", "pw", APP_ID, number), queue="naive")
            deadline = time.monotonic() + seconds * 6 + 60
            while time.monotonic() < deadline:
                stats = sim.stats()["accounts"]["5550002"]
                if stats["accepted"] + stats["rejected_429"] >= count:
                    break
                time.sleep(0.5)
            stats = sim.stats()["accounts"]["5550002"]
            result = _window_stats([c for c in sim.ledger()["calls"] if c["account"] == "5550002"])
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
    return {
        **result,
        "rate": rate,
        "dialer": "Celery rate_limit (per worker)",
        "429s": stats["rejected_429"],
        "duplicates": stats["duplicate_dials"],
        "complete_s": None,
        "lost_to_429": count - stats["accepted"],
    }


def run_ceiling(rate: int, count: int) -> dict[str, Any]:
    """Plivo bulk at a high CPS: how fast the whole pipeline (dial, callbacks stored and applied) goes."""
    result, stats, elapsed = _run_campaign(
        "plivo", "MACEILING", rate, count, speed=100, workers=2, area="917", timeout_s=600
    )
    return {
        **result,
        "rate": rate,
        "dialer": "engine ceiling (plivo bulk)",
        "429s": stats["rejected_429"],
        "complete_s": round(elapsed, 1),
        "end_to_end_calls_per_s": round(count / elapsed, 1),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| dialer | budget CPS | calls | calls/s achieved | most in any 1 s | 429s | all results in (s) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dialer']} | {r['rate']} | {r['calls']} | {r['calls_per_s']} | {r['max_in_1s_window']} "
            f"| {r.get('429s', '-')} | {r.get('complete_s') or '-'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="20,200")
    parser.add_argument("--seconds", type=float, default=15.0, help="campaign length at the budget")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--ceiling-rate", type=int, default=1000)
    parser.add_argument("--ceiling-calls", type=int, default=10000)
    args = parser.parse_args(argv)
    _environment()
    sys.path.insert(0, str(REPO))
    _fresh_database()
    rows: list[dict[str, Any]] = []
    for rate in [int(r) for r in args.rates.split(",") if r]:
        rows.append(run_engine(rate, args.seconds))
        print(json.dumps(rows[-1]), flush=True)
        if not args.no_baseline:
            rows.append(run_naive(rate, args.seconds))
            print(json.dumps(rows[-1]), flush=True)
    if not args.no_ceiling:
        rows.append(run_ceiling(args.ceiling_rate, args.ceiling_calls))
        print(json.dumps(rows[-1]), flush=True)
    print(_table(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dialing_bench.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
