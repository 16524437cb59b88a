"""Line occupancy when concurrency is the limit (issue 18): 30 lines (the account's max concurrent calls),
50 CPS, calls of about 3 s, 400 calls; how busy the carrier keeps the lines.

    python -m bench occupancy                              # 400 calls, 30 lines, 50 CPS, 3 s calls
    python -m bench.occupancy_bench --calls 100            # shorter
    python -m bench.occupancy_bench --busy-core            # one core kept busy beside the stack

Bandwidth (one destination per request), 4 worker processes of 8 threads, beat and the API; the simulator
at speed 1, every call answered after 1 s of ringing and 2 s of talk, so a line is held about 3 s from the
carrier's accepting the request to the hangup. Everything is measured from the simulator's own record of
each call (received_at to hangup_at, the span its concurrency limit counts):
- total: first call received to last hangup; and the campaign's start to its completion;
- ideal: calls × the mean call length / lines, plus the ramp (lines / CPS: the first lines are opened at
  the CPS);
- occupancy = busy line-seconds / (lines × total);
- line refill delay: the k-th line freed is refilled by the (lines + k)-th call (the concurrency limit allows
  no earlier one), so their distance is how long a freed line sat idle (p50 / p99 / max). Issue 18 asks
  for a refill within 100 ms of the hangup.
Also the most live calls the carrier saw (must be ≤ lines), its 429s and calls dialed twice (must be 0).
Conditions as bench.conditions (`--priority`, `--busy-core`; normal priority by default), labelled.
Uses its own database (dialer_bench_occupancy) and Redis prefix; Postgres and Redis must be running.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from bench import conditions
from bench.dialing_bench import API_USER, APP_ID, OUT, prepare

AUTH_ID = "5550300"
RING_S, TALK_S = 1.0, 2.0
OUTCOMES = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
            "talk_time": [TALK_S, TALK_S], "ring_time": [RING_S, RING_S]}
# Speed 1: a carrier's callback retries in real seconds.
RETRIES = {"attempts": 8, "backoff": 0.5, "backoff_factor": 2.0, "timeout": 10.0}


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def refill_delays(spans: Sequence[tuple[float, float]], lines: int) -> list[float]:
    """Seconds each freed line sat idle: with at most `lines` calls live, call number lines + k (in arrival
    order) needs k + 1 hangups before it, so its distance from the (k + 1)-th hangup is how long that
    freed line waited to be used again."""
    arrivals = sorted(start for start, _ in spans)
    hangups = sorted(end for _, end in spans)
    return [arrivals[lines + k] - hangups[k] for k in range(len(arrivals) - lines)]


def occupancy(spans: Sequence[tuple[float, float]], lines: int, rate: float) -> dict[str, Any]:
    """Busy line-seconds against lines × the span from the first arrival to the last hangup; the ideal
    span (calls × mean call / lines + lines / rate)."""
    if not spans:
        return {"calls": 0}
    busy = sum(end - start for start, end in spans)
    total = max(end for _, end in spans) - min(start for start, _ in spans)
    mean_call = busy / len(spans)
    ideal = len(spans) * mean_call / lines + lines / rate
    delays = refill_delays(spans, lines)
    return {
        "calls": len(spans), "mean_call_s": round(mean_call, 3), "total_s": round(total, 2),
        "ideal_s": round(ideal, 2), "total_over_ideal": round(total / ideal, 3) if ideal else None,
        "occupancy_pct": round(100.0 * busy / (lines * total), 1) if total else None,
        # The most a run of this size can reach: the ramp keeps lines idle even in the ideal.
        "ideal_occupancy_pct": round(100.0 * busy / (lines * ideal), 1) if ideal else None,
        "refill_p50_ms": round(_percentile(delays, 0.5) * 1000, 1),
        "refill_p99_ms": round(_percentile(delays, 0.99) * 1000, 1),
        "refill_max_ms": round(max(delays, default=0.0) * 1000, 1),
        "refills_within_100ms_pct": round(100.0 * sum(d <= 0.1 for d in delays) / len(delays), 1)
        if delays else None,
    }


def run(calls: int, lines: int, rate: int, run_conditions: conditions.Conditions) -> dict[str, Any]:
    # Imported once prepare() has set this bench's environment (database, Redis prefix), as every bench does.
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from bench.precision_bench import retrying
    from campaigns.accounts import add_account
    from campaigns.db import connect
    from tests.engine_harness import load_campaign, numbers, prepare_and_start, running_stack
    from tests.polling import wait_for
    from tests.sim_helpers import start_simulator

    account = {"provider": "bandwidth", "auth_id": AUTH_ID, "auth_token": "pw", "cps": rate,
               "max_concurrent": lines, "application_id": APP_ID, "api_username": API_USER}
    config = {"accounts": [account], "outcomes": OUTCOMES, "callbacks": RETRIES}
    nominal_ideal = calls * (RING_S + TALK_S) / lines + lines / rate
    conn = retrying("connect", lambda: connect(autocommit=True))
    campaign_id = retrying("load", lambda: load_campaign("occupancy", numbers(calls, area="646")))
    with start_simulator(config, speed=1, seed=7) as sim, running_stack(workers=4, threads=8):
        carrier_nice = sim.own_cores(run_conditions.carrier_nice) if run_conditions.carrier_nice else 0
        account_id = add_account(
            conn, name="occupancy", provider="bandwidth", auth_id=AUTH_ID, auth_token="pw", cps=rate,
            max_concurrent=lines, base_url=sim.base_url,
            options={"application_id": APP_ID, "api_username": API_USER},
        )
        started = time.monotonic()
        prepare_and_start(conn, campaign_id, account_id,
                          provider_options={"ring_timeout": 30, "time_limit": 60, "track_ringing": False})
        wait_for(
            lambda: conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
            == ("completed",),
            timeout=4 * nominal_ideal + 60, interval=0.2, what="campaign completed",
        )
        completed_s = time.monotonic() - started
        sim.wait_idle()
        stats = sim.stats()["accounts"][AUTH_ID]
        spans = [(c["received_at"], c["hangup_at"]) for c in sim.ledger()["calls"]
                 if c["account"] == AUTH_ID and c["hangup_at"] is not None]
    return {
        "run": run_conditions.label(carrier_nice), "lines": lines, "rate": rate,
        "nominal_call_s": RING_S + TALK_S,
        **occupancy(spans, lines, rate), "campaign_complete_s": round(completed_s, 2),
        "nominal_ideal_s": round(nominal_ideal, 2), "max_live": stats["max_concurrent_observed"],
        "429s": stats["rejected_429"], "dialed_twice": stats["duplicate_dials"],
    }


def _table(r: dict[str, Any], load: str) -> str:
    return "\n".join([
        f"load average at start: {load}; run: {r['run']}",
        "| calls, lines, CPS | total (first call to last hangup) / ideal | occupancy | campaign start to "
        "completed | line refill p50 / p99 / max ms (≤ 100 ms) | most live, 429s, dialed twice |",
        "|---|---|---|---|---|---|",
        f"| {r['calls']}, {r['lines']}, {r['rate']} | {r['total_s']} s / {r['ideal_s']} s "
        f"(mean call {r['mean_call_s']} s) = {r['total_over_ideal']}× | {r['occupancy_pct']}% (ideal "
        f"{r['ideal_occupancy_pct']}%; ≥ 95%) "
        f"| {r['campaign_complete_s']} s | {r['refill_p50_ms']} / {r['refill_p99_ms']} / "
        f"{r['refill_max_ms']} ({r['refills_within_100ms_pct']}% within 100 ms) "
        f"| {r['max_live']}, {r['429s']}, {r['dialed_twice']} |",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--lines", type=int, default=30, help="the account's max concurrent calls")
    parser.add_argument("--rate", type=int, default=50, help="the account's CPS")
    parser.add_argument("--label", default="", help="a name for the saved JSON (bench/out)")
    conditions.add_arguments(parser)
    args = parser.parse_args(argv)
    run_conditions = conditions.from_arguments(args)
    prepare("dialer_bench_occupancy")
    os.environ["DIALER_SENDER_NICE"] = str(run_conditions.sender_nice)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with conditions.busy_core(run_conditions.busy_core):
        result = run(args.calls, args.lines, args.rate, run_conditions)
    result["load_average"], result["load_average_end"] = load, " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps(result))
    print(_table(result, load))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"occupancy_bench{'_' + args.label if args.label else ''}.json").write_text(
        json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
