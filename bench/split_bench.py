"""Split routing over two accounts (issue 23): one campaign with `routing = 'split'` over two 50 CPS accounts
of different carriers; the issue's figure is "≥ 96% of 100 CPS used, with 0 429s at either".

    python -m bench split                          # 3,000 calls, one run (about a minute)
    python -m bench split --repeat 3               # three campaigns on one stack, a line each and a summary
    python -m bench split --busy-core --repeat 2   # the same with one core kept busy beside the stack

Two carriers, each a simulator process of its own, as two carriers are two hosts: each counts its own
arrivals, stamped by its kernel (simulator/stamping.py), in a strict sliding 1-second window, and neither
one's CPU shortage delays the other's stamps. One is Plivo sent one destination per request (`bulk: false`),
the other Tryvox (one per request by nature), so both accounts' budgets are spent the same way, one request
per call, and the comparison between them is clean. Calls are all answered and short (bench.dialing_bench's
ALL_ANSWERED, the carriers at speed 30) and each account allows a million lines, so only the CPS binds.

The stack is precision's: 4 worker processes of 8 threads, beat and the API, everything at normal priority
unless --priority (bench.conditions). A short warm-up split campaign runs first (`--warm-up-calls`), so the
first run is not also the stack's cold start. Each run gets two new accounts (no AIMD state or circuit
carried over) and a campaign of `--calls` destinations.

Per run, from the two carriers' ledgers:
- **steady state**: the whole 1-second bins while both accounts were dialing, from the later of the two
  first arrivals to the earlier of the two last arrivals (the ramp of the account that started second and
  the tail of the one that finished first are left out); the combined arrivals in them against 100 CPS, and
  each account's against its 50;
- **whole run**: bench.precision_bench's "budget used", the mean arrivals over the whole 1-second bins from
  the first arrival (the last, partial bin left out), combined and per account;
- the 429s each carrier answered, the most arrivals in any sliding 1-second window at each (≤ its CPS),
  destinations dialed twice across both carriers (0), each account's share of the calls, and the sends the
  workers refused as late (workers.metrics.send_lateness);
- what each account had ahead of its sends, sampled every 0.25 s as the dispatcher's back-pressure counts
  it (claimed and not yet sent): a short second with nothing ahead is an account starved of claims, one
  with work ahead is a send path that did not keep up.
`--baseline` also runs, after each split run, a campaign on one Plivo account alone at `--baseline-cps`
(50: what one of the two accounts uses on its own; 100: the same rate of sends through one account), with
as many seconds of calls, under the same conditions: a split run's shortfall told from the one account's
own, or from the cost of 100 sends a second.
Uses its own database (dialer_bench_split) and Redis prefix; Postgres and Redis must be running.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import conditions
from bench.dialing_bench import ALL_ANSWERED, CARRIER_RETRIES, OUT, prepare
from bench.precision_bench import _full_seconds_used, _lateness, _load, _per_second, retrying

ACCOUNT_CPS = 50
COMBINED_CPS = 2 * ACCOUNT_CPS
TARGET_USED = 96.0  # percent of the combined budget, issue 23
SPEED = 30.0  # as precision: a 1-3 s call lasts 33-100 ms here
OPTIONS = {"ring_timeout": 30, "time_limit": 60, "bulk": False}
FALLBACK_CALLER_ID = "+14155550199"
SAMPLE_EVERY_S = 0.25
# What each account has ahead of its sends, as the dispatcher's back-pressure counts it
# (workers.dispatch.dispatcher._queued_count): destinations claimed for it and attempts started, not sent.
AHEAD = """
SELECT a.id,
       (SELECT count(*) FROM destination WHERE campaign_id = %(c)s AND status = 'queued'
            AND next_attempt_at > now() AND claim_account_id = a.id)
     + (SELECT count(*) FROM call_attempt WHERE campaign_id = %(c)s AND status = 'dialing'
            AND sent_at IS NULL AND account_id = a.id)
FROM unnest(%(accounts)s::bigint[]) AS a(id)"""


@dataclass
class Carrier:
    sim: Any  # simulator.process.RunningSimulator
    provider: str
    auth_id: str = ""
    account_id: int = 0


def _new_account(conn: Any, carrier: Carrier, run: str, cps: int) -> None:
    """A fresh account of `cps` at the carrier and ours for it."""
    from campaigns.accounts import add_account

    tag = secrets.token_hex(3)
    auth_id, token = {"plivo": (f"MASPLIT{tag.upper()}", f"tok-{tag}"),
                      "tryvox": (f"tvx-split-{tag}", f"tvx_sk_test_{tag}")}[carrier.provider]
    account = {"provider": carrier.provider, "auth_id": auth_id, "auth_token": token, "cps": cps,
               "max_concurrent": 10**6}
    carrier.sim.configure({"accounts": [account]})
    carrier.auth_id = auth_id
    carrier.account_id = add_account(
        conn, name=f"split-{run}-{carrier.provider}-{tag}", provider=carrier.provider, auth_id=auth_id,
        auth_token=token, cps=cps, max_concurrent=10**6, base_url=carrier.sim.base_url,
    )


def _split_campaign(conn: Any, name: str, calls: int, start: int, first: Carrier, *others: Carrier) -> int:
    """A loaded campaign on `first` with the `others` as its other accounts, routing split, not started
    (with no others, a campaign on one account)."""
    from campaigns.campaign_accounts import Fallback, replace_fallbacks
    from tests.engine_harness import load_campaign, numbers, prepare_and_start

    campaign_id = retrying("load", lambda: load_campaign(f"{name}-{secrets.token_hex(3)}",
                                                         numbers(calls, start=start)))
    prepare_and_start(conn, campaign_id, first.account_id, provider_options=OPTIONS, start=False)
    with conn.transaction():
        replace_fallbacks(conn, campaign_id, [Fallback(c.account_id, FALLBACK_CALLER_ID) for c in others])
        conn.execute("UPDATE campaign SET routing = 'split' WHERE id = %s", (campaign_id,))
    return campaign_id


def _calls(carrier: Carrier) -> list[dict[str, Any]]:
    return [c for c in carrier.sim.ledger()["calls"] if c["account"] == carrier.auth_id]


def _whole_bins(times: list[float], start: float, end: float) -> list[int]:
    """Arrivals in each whole 1-second bin [start + i, start + i + 1) that ends by `end`."""
    bins = [0] * max(0, int(end - start))
    for t in times:
        i = int(t - start) if t >= start else -1
        if 0 <= i < len(bins):
            bins[i] += 1
    return bins


def _pct(bins: list[int], cps: int) -> float | None:
    return round(100.0 * sum(bins) / len(bins) / cps, 1) if bins else None


def measure(times: dict[str, list[float]], cps: dict[str, int]) -> dict[str, Any]:
    """The figures of one run from each account's arrival times (pure): the steady state while every
    account was dialing, and the whole run as bench.precision_bench counts it."""
    from tests.engine_harness import max_in_window

    combined = sorted(t for ts in times.values() for t in ts)
    total_cps = sum(cps.values())
    dialing = [ts for ts in times.values() if ts]
    steady_start = max(min(ts) for ts in dialing) if len(dialing) == len(times) else 0.0
    steady_end = min(max(ts) for ts in dialing) if len(dialing) == len(times) else 0.0
    steady = _whole_bins(combined, steady_start, steady_end)
    return {
        "steady_s": len(steady),
        "steady_used_pct": _pct(steady, total_cps),
        "steady_min_s": min(steady, default=None),  # the worst whole second of the steady state
        "whole_run_used_pct": _full_seconds_used(combined, total_cps),
        "accounts": {
            name: {
                "calls": len(ts), "max_in_1s": max_in_window(ts),
                "steady_used_pct": _pct(_whole_bins(ts, steady_start, steady_end), cps[name]),
                "whole_run_used_pct": _full_seconds_used(ts, cps[name]),
                "first_s": round(min(ts) - min(combined), 2) if ts else None,
                "last_s": round(max(ts) - min(combined), 2) if ts else None,
            }
            for name, ts in times.items()
        },
    }


@contextmanager
def sampling_ahead(campaign_id: int, accounts: list[int]) -> Iterator[list[tuple[float, dict[int, int]]]]:
    """Every SAMPLE_EVERY_S, each account's work ahead of its sends (AHEAD), with the wall time: whether a
    short second was an account starved of claims (nothing ahead) or one whose claims were not sent in time.
    Its own connection; one cheap query per sample."""
    from campaigns.db import connect

    samples: list[tuple[float, dict[int, int]]] = []
    stop = threading.Event()

    def sample() -> None:
        with connect(autocommit=True) as conn:
            while not stop.wait(SAMPLE_EVERY_S):
                rows = conn.execute(AHEAD, {"c": campaign_id, "accounts": accounts}).fetchall()
                samples.append((time.time(), {int(a): int(n) for a, n in rows}))

    thread = threading.Thread(target=sample, name="ahead-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=5)


def ahead_figures(samples: list[tuple[float, dict[int, int]]], account_id: int, start: float,
                  end: float) -> dict[str, Any]:
    """The account's samples within [start, end): how many found nothing ahead of its sends, and the
    least and the median ahead (pure)."""
    ahead = sorted(n[account_id] for t, n in samples if start <= t < end and account_id in n)
    return {"ahead_samples": len(ahead), "ahead_dry": sum(1 for n in ahead if n == 0),
            "ahead_min": ahead[0] if ahead else None,
            "ahead_median": ahead[len(ahead) // 2] if ahead else None}


class Bench:
    """Two carriers and one stack for every run; each run has two new accounts."""

    def __init__(self, carriers: list[Carrier], lateness_root: Path, label: str) -> None:
        from campaigns.db import connect

        self.carriers = carriers
        self.lateness_root = lateness_root
        self.label = label
        self.seq = 0
        self.conn = retrying("connect", lambda: connect(autocommit=True))

    def run(self, calls: int, name: str, split: bool = True,
            baseline_cps: int = ACCOUNT_CPS) -> dict[str, Any]:
        """One campaign split over both carriers' new 50 CPS accounts; or, not `split`, on a new account of
        `baseline_cps` at the first carrier alone (the baseline, under the same conditions)."""
        from tests.polling import wait_for

        self.seq += 1
        carriers = self.carriers if split else self.carriers[:1]
        cps = ACCOUNT_CPS if split else baseline_cps
        for carrier in carriers:
            _new_account(self.conn, carrier, name, cps)
        campaign_id = _split_campaign(self.conn, f"split-{name}", calls, self.seq * 10000, *carriers)
        since = time.time()
        load = _load()
        started = time.monotonic()
        with sampling_ahead(campaign_id, [c.account_id for c in carriers]) as samples:
            self.conn.execute("UPDATE campaign SET state = 'running' WHERE id = %s", (campaign_id,))
            wait_for(lambda: self.conn.execute("SELECT state FROM campaign WHERE id = %s",
                                               (campaign_id,)).fetchone() == ("completed",),
                     timeout=calls / (cps * len(carriers)) * 6 + 60, interval=0.5,
                     what=f"campaign {campaign_id} completed")
        complete_s = round(time.monotonic() - started, 1)
        ledgers = {c.provider: _calls(c) for c in carriers}
        placed = Counter(call["destination"] for ledger in ledgers.values() for call in ledger)
        statuses: dict[str, int] = dict(self.conn.execute(
            "SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1", (campaign_id,)
        ).fetchall())
        stats = {c.provider: c.sim.stats()["accounts"][c.auth_id] for c in carriers}
        times = {p: [c["received_at"] for c in ledger] for p, ledger in ledgers.items()}
        figures = measure(times, {c.provider: cps for c in carriers})
        steady = (max(min(ts) for ts in times.values() if ts), min(max(ts) for ts in times.values() if ts))
        for carrier in carriers:
            account = figures["accounts"][carrier.provider]
            provider = carrier.provider
            account.update(ahead_figures(samples, carrier.account_id, *steady))
            account["cps"] = cps
            account["429s"] = int(stats[provider]["rejected_429"])
            account["duplicates"] = int(stats[provider]["duplicate_dials"])
            account["per_second"] = _per_second([c["received_at"] for c in ledgers[provider]])
        return {
            "run": name, "routing": "split" if split else "one account", "conditions": self.label,
            "load_average": load, "calls": calls, "cps": cps * len(carriers),
            "placed": len(placed), "dialed_twice": sum(1 for n in placed.values() if n > 1),
            "statuses": statuses, "complete_s": complete_s, **figures,
            "429s": sum(a["429s"] for a in figures["accounts"].values()),
            **_lateness(self.lateness_root, since),
        }


def line(row: dict[str, Any]) -> str:
    """One run in one line."""
    accounts = "; ".join(
        f"{p} {a['calls']} calls, steady {a['steady_used_pct']}% of {a['cps']}, max {a['max_in_1s']}/s, "
        f"{a['429s']} 429s, nothing ahead in {a['ahead_dry']}/{a['ahead_samples']} samples"
        for p, a in row["accounts"].items())
    cps = row["cps"]
    return (f"{row['run']} ({row['routing']}) [{row['conditions']}, load {row['load_average']}]: "
            f"steady {row['steady_used_pct']}% of {cps} CPS over {row['steady_s']} s "
            f"(worst second {row['steady_min_s']}), whole run "
            f"{row['whole_run_used_pct']}%; {accounts}; dialed twice {row['dialed_twice']}; refused late "
            f"{row['refused_late']}; {row['complete_s']} s")


def summary(rows: list[dict[str, Any]]) -> str:
    def span(values: list[Any]) -> str:
        known = [v for v in values if v is not None]
        return f"{min(known)}–{max(known)}" if known else "-"

    steady = [r["steady_used_pct"] for r in rows]
    met = sum(1 for v in steady if v is not None and v >= TARGET_USED)
    worst = {p: max(r["accounts"][p]["max_in_1s"] for r in rows) for p in rows[0]["accounts"]} if rows else {}
    cps = rows[0]["cps"] if rows else COMBINED_CPS
    return (f"{len(rows)} run(s): steady {span(steady)}% of {cps} CPS (≥ {TARGET_USED}% in {met}); "
            f"whole run {span([r['whole_run_used_pct'] for r in rows])}%; "
            + "; ".join(f"{p} steady {span([r['accounts'][p]['steady_used_pct'] for r in rows])}% of "
                        f"{rows[0]['accounts'][p]['cps']}, most in 1 s {worst[p]}" for p in worst)
            + f"; 429s {sum(r['429s'] for r in rows)}; dialed twice {sum(r['dialed_twice'] for r in rows)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000,
                        help="destinations per run (3,000: ~30 s at 100 CPS)")
    parser.add_argument("--repeat", type=int, default=1, help="runs, one campaign each, on one stack")
    parser.add_argument("--warm-up-calls", type=int, default=150,
                        help="calls of the unmeasured warm-up split campaign (0: none)")
    parser.add_argument("--baseline", action="store_true",
                        help="after each split run, as many seconds of calls on one Plivo account alone")
    parser.add_argument("--baseline-cps", type=int, default=ACCOUNT_CPS,
                        help="the baseline account's CPS (50: one of the two alone; 100: one account at the "
                             "split's combined rate)")
    parser.add_argument("--label", default="", help="a name for the saved JSON (bench/out)")
    conditions.add_arguments(parser)
    args = parser.parse_args(argv)
    run_conditions = conditions.from_arguments(args)
    prepare("dialer_bench_split")
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from tests.engine_harness import running_stack
    from tests.sim_helpers import start_simulator
    from workers.metrics.send_lateness import SAMPLES_DIR_ENV

    root = Path(tempfile.mkdtemp(prefix="split-lateness-"))
    os.environ[SAMPLES_DIR_ENV] = str(root)
    os.environ["DIALER_SENDER_NICE"] = str(run_conditions.sender_nice)
    config = {"accounts": [], "outcomes": ALL_ANSWERED, "callbacks": CARRIER_RETRIES}
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    with ExitStack() as stack:
        stack.enter_context(conditions.busy_core(run_conditions.busy_core))
        carriers = [Carrier(stack.enter_context(start_simulator(config, speed=SPEED, seed=seed)), provider)
                    for provider, seed in (("plivo", 61), ("tryvox", 62))]
        stack.enter_context(running_stack(workers=4, threads=8))
        niced = [c.sim.own_cores(run_conditions.carrier_nice) for c in carriers
                 if run_conditions.carrier_nice]
        label = run_conditions.label(niced[0] if niced else 0)
        print(f"run: {label}", flush=True)
        bench = Bench(carriers, root, label)
        if args.warm_up_calls:
            bench.run(args.warm_up_calls, "warm-up")
        for i in range(1, args.repeat + 1):
            rows.append(bench.run(args.calls, f"run {i}"))
            print(line(rows[-1]), flush=True)
            if args.baseline:
                baselines.append(bench.run(args.calls * args.baseline_cps // COMBINED_CPS, f"baseline {i}",
                                           split=False, baseline_cps=args.baseline_cps))
                print(line(baselines[-1]), flush=True)
    print(summary(rows))
    if baselines:
        print("baseline: " + summary(baselines))
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"split_bench{'_' + args.label if args.label else ''}.json"
    (OUT / name).write_text(json.dumps({"run": label, "calls": args.calls, "rows": rows,
                                         "baselines": baselines}, indent=2))
    failed = [r for r in rows + baselines
              if r["dialed_twice"] or r["429s"] or r["statuses"] != {"done": r["calls"]}
              or any(a["max_in_1s"] > a["cps"] for a in r["accounts"].values())]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
