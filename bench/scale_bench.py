"""Scale (issue 13): 100,000 destinations at 500 CPS through Plivo bulk, on this machine with the simulator.

    python -m bench scale                             # 100,000 at 500 CPS (about 4 minutes)
    python -m bench scale --rate 1000                 # issue 18's row: 100,000 at 1,000 CPS
    python -m bench scale --rate 1000 --busy-core     # the same with one core kept busy beside the stack
    python -m bench.scale_bench --destinations 20000  # shorter

Reports the finish time (campaign completed) against the floor (destinations / CPS plus the longest
call), each process's peak RSS (VmHWM of the workers, beat, API and simulator), the callback lag
(a stored callback's received_at to applied_at, p50/p99), and Postgres's growth per 100,000 attempts
(the database and its three big tables), and the CPU ms per call of each process from the campaign's start
to its completion (bench.process_cpu; "dialer" is all but the carrier). Conditions as bench.conditions
(`--priority`, `--busy-core`; normal priority by default), labelled. Bounded: it gives up after twice the
floor plus two minutes.
Uses its own database (dialer_bench_scale) and Redis prefix; Postgres and Redis must be running.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import conditions
from bench.dialing_bench import APP_ID, CARRIER_RETRIES, OUT, prepare
from bench.process_cpu import CpuMeter, per_call_ms
from bench.stack_processes import DIALER_GROUPS, stack_groups

AUTH_ID = "MASCALE0000000000001"
# Calls last 1-3 s of carrier time at --speed 30: well under a second each, so the floor is the dialing.
OUTCOMES = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
            "talk_time": [1, 3], "ring_time": [1, 2]}
SPEED = 30.0
LONGEST_CALL_S = (3 + 2) / SPEED
TABLES = ("destination", "call_attempt", "call_event")


def _peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _processes(stack: Any, sim: Any) -> dict[str, int]:
    named = {f"worker{i}": p.pid for i, p in enumerate(stack.workers)}
    for proc in stack.others:
        argv = " ".join(str(a) for a in proc.args) if isinstance(proc.args, list) else str(proc.args)
        named["api" if "uvicorn" in argv else "beat" if " beat" in argv else f"other{proc.pid}"] = proc.pid
    named["simulator"] = sim.process.pid
    return named


def _one(conn: Any, sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _sizes(conn: Any) -> dict[str, int]:
    sizes = {"database": _one(conn, "SELECT pg_database_size(current_database())")}
    for table in TABLES:
        sizes[table] = _one(conn, "SELECT pg_total_relation_size(%s)", table)
    return sizes


def _callback_lag(conn: Any) -> dict[str, float]:
    p50, p99, count = conn.execute(
        """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP
                  (ORDER BY lag), count(*)
           FROM (SELECT extract(epoch FROM applied_at - received_at) AS lag FROM call_event
                 WHERE applied_at IS NOT NULL) lags"""
    ).fetchone()
    return {"callback_lag_p50_ms": round((p50 or 0) * 1000, 1),
            "callback_lag_p99_ms": round((p99 or 0) * 1000, 1), "callbacks_applied": count}


def booking_cost(rates: Sequence[int] = (100, 500, 1000, 2000), bookings: int = 2000) -> dict[int, float]:
    """Redis CPU (µs, from INFO commandstats) per single-destination booking, with the account's window
    full at each rate: what bounds one account's bookings on one Redis core. Measured on a private
    redis-server, so nobody else's scripts are counted."""
    import redis

    from tests.private_services import private_redis
    from workers.dialing.send_booking import BUDGET_WINDOW_S
    from workers.ratelimit import Budgets

    cost: dict[int, float] = {}
    with private_redis() as server:
        client = redis.Redis.from_url(server.url)
        budgets = Budgets(client)
        for index, cps in enumerate(rates):
            account = 9_900_000 + index
            for _ in range(cps):  # fill the window ahead, as a busy account has it
                budgets.reserve(account, None, 1, cps, None, 10.0, BUDGET_WINDOW_S)
            client.config_resetstat()
            for _ in range(bookings):
                budgets.reserve(account, None, 1, cps, None, 10.0, BUDGET_WINDOW_S)
            stats = client.info("commandstats")
            script = stats.get("cmdstat_evalsha") or stats.get("cmdstat_eval") or {}
            cost[cps] = round(float(script.get("usec_per_call", 0.0)), 1)
        client.close()
    return cost


def run(destinations: int, rate: int, n_workers: int, run_conditions: conditions.Conditions,
        ) -> dict[str, Any]:
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from bench.precision_bench import retrying
    from campaigns.accounts import add_account
    from campaigns.config import get_settings
    from campaigns.db import connect
    from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
    from tests.polling import wait_for
    from tests.sim_helpers import start_simulator

    floor_s = destinations / rate + LONGEST_CALL_S
    account = {"provider": "plivo", "auth_id": AUTH_ID, "auth_token": "pw", "cps": rate,
               "max_concurrent": 10**6}
    config = {"accounts": [account], "outcomes": OUTCOMES, "callbacks": CARRIER_RETRIES}
    conn = retrying("connect", lambda: connect(autocommit=True))
    before = _sizes(conn)
    campaign_id = retrying("load", lambda: load_campaign("scale", numbers(destinations, area="917")))
    loaded = _sizes(conn)
    with (start_simulator(config, speed=SPEED, seed=11) as sim,
          running_stack(workers=n_workers, threads=8) as stack):
        carrier_nice = sim.own_cores(run_conditions.carrier_nice) if run_conditions.carrier_nice else 0
        account_id = add_account(conn, name="scale", provider="plivo", auth_id=AUTH_ID, auth_token="pw",
                                 cps=rate, max_concurrent=10**6, base_url=sim.base_url,
                                 options={"application_id": APP_ID})
        settings = get_settings()
        meter = CpuMeter(stack_groups(stack, sim.process.pid, settings.psycopg_url, settings.redis_url))
        with meter.sampling(interval=1.0):
            started = time.monotonic()
            prepare_and_start(conn, campaign_id, account_id,
                              provider_options={"ring_timeout": 30, "time_limit": 60, "track_ringing": False})
            try:
                wait_for(
                    lambda: conn.execute("SELECT state FROM campaign WHERE id = %s",
                                         (campaign_id,)).fetchone() == ("completed",),
                    timeout=2 * floor_s + 120, interval=1.0, what="campaign completed",
                )
                finished_s: float | None = time.monotonic() - started
            except TimeoutError:  # bounded: report how far it got
                finished_s = None
        statuses: dict[str, int] = dict(conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall())
        ambiguous = _one(conn, "SELECT count(*) FROM call_attempt WHERE error_message LIKE 'ambiguous%%'")
        rss = {name: _peak_rss_mb(pid) for name, pid in _processes(stack, sim).items()}
        stats = sim.stats()["accounts"][AUTH_ID]
    after = _sizes(conn)
    attempts = _one(conn, "SELECT count(*) FROM call_attempt")
    per_100k = {k: round((after[k] - loaded[k]) * 100_000 / max(attempts, 1) / 2**20, 1) for k in after}
    cpu = per_call_ms(meter.seconds, int(stats["accepted"]))
    return {
        "run": run_conditions.label(carrier_nice),
        "destinations": destinations, "rate": rate, "workers": n_workers, "attempts": attempts,
        "finish_s": round(finished_s, 1) if finished_s else None, "floor_s": round(floor_s, 1),
        "finish_over_floor": round(finished_s / floor_s, 3) if finished_s else None,
        "destinations_by_status": statuses, "ambiguous_sends": ambiguous,
        "429s": stats["rejected_429"], "max_in_1s": stats.get("max_in_1s_window"),
        "peak_rss_mb": rss, **_callback_lag(conn),
        "load_mb": {k: round((loaded[k] - before[k]) / 2**20, 1) for k in loaded},
        "growth_mb_per_100k_attempts": per_100k,
        "cpu_ms_per_call": {**cpu, "dialer": round(sum(cpu.get(g, 0.0) for g in DIALER_GROUPS), 3)},
    }


def _report(r: dict[str, Any], load: str, load_end: str) -> str:
    rss = ", ".join(f"{k} {v}" for k, v in r["peak_rss_mb"].items())
    growth = ", ".join(f"{k} {v}" for k, v in r["growth_mb_per_100k_attempts"].items())
    return "\n".join([
        f"load average at start / end: {load} / {load_end}; run: {r['run']}",
        "| what | measured |", "|---|---|",
        f"| destinations, CPS, workers | {r['destinations']}, {r['rate']}, {r['workers']} |",
        f"| finish (campaign completed) / floor | {r['finish_s'] or 'not completed in the bound'} s / "
        f"{r['floor_s']} s = {r['finish_over_floor'] or '-'}× |",
        f"| destinations by status at the end; ambiguous sends (no answer in the read timeout) | "
        f"{r['destinations_by_status']}; {r['ambiguous_sends']} |",
        f"| carrier 429s, most in any 1 s | {r['429s']}, {r['max_in_1s']} |",
        f"| peak RSS per process (MB) | {rss} |",
        f"| callback lag received → applied p50 / p99 | {r['callback_lag_p50_ms']} / "
        f"{r['callback_lag_p99_ms']} ms ({r['callbacks_applied']} callbacks) |",
        f"| Postgres growth per 100,000 attempts (MB) | {growth} |",
        "| CPU ms per call (dialer = workers + API + beat + Postgres + Redis) | "
        + ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_call"].items()) + " |",
        "| one single-destination booking in Redis (µs, window full), by CPS | "
        + ", ".join(f"{k}: {v}" for k, v in r["booking_us_by_cps"].items()) + " |",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--destinations", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    conditions.add_arguments(parser)
    args = parser.parse_args(argv)
    run_conditions = conditions.from_arguments(args)
    prepare("dialer_bench_scale")
    os.environ["DIALER_SENDER_NICE"] = str(run_conditions.sender_nice)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cost = booking_cost()
    print(json.dumps({"booking_us_by_cps": cost}), flush=True)
    with conditions.busy_core(run_conditions.busy_core):
        result = {**run(args.destinations, args.rate, args.workers, run_conditions),
                  "booking_us_by_cps": cost}
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps(result))
    print(_report(result, load, load_end))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale_bench.json").write_text(json.dumps({"load_average": load, "load_average_end": load_end,
                                                      **result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
