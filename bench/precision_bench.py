"""Send precision (issues 13 and 18): single-destination requests at 20, 200 and 500 CPS against a carrier
that counts arrivals in a strict sliding 1-second window, with and without network-like arrival jitter (20
and 200); then how many calls still arrive after `dialer campaign pause` returns, at 100 CPS.

    python -m bench precision                          # every scenario, normal priority (about 4 minutes)
    python -m bench.precision_bench --busy-core        # the same with one core kept busy beside the stack
    python -m bench.precision_bench --priority         # carrier nice -15, sender threads nice -10
    python -m bench.precision_bench --only 500 --no-jitter --no-pause   # 500 CPS only
    python -m bench precision --only 200 --no-jitter --no-pause --profile bench/out/profiles  # py-spy

4 worker processes of 8 threads, beat and the API, one simulator (the carrier); Bandwidth (one destination
per request). By default every process runs at normal priority, as a user's dry run with everything on one
machine would (bench.conditions). `--priority` runs the simulator at nice -15 (a carrier on its own
hardware: the dialer's load does not delay the instants it counts arrivals at) and the workers' sender
threads at nice -10, as docker-compose.yml does (DIALER_SENDER_NICE); `--sender-nice`/`--carrier-nice`
set either alone. `--busy-core` runs one normal-priority `python -c 'while True: pass'` beside the stack
for the whole run. Every row is labelled with its conditions ("normal priority", "priority: carrier nice
-15, sender nice -10", "· busy core"). A short warm-up campaign (`--warm-up-calls`, 0 for none) runs first,
so the first scenario is not also the stack's cold start; each row keeps its per-second arrivals
(`per_second`), cold start included.

Per scenario: the most arrivals in any sliding 1-second window, the carrier's 429s, the budget used (mean
arrivals over the whole 1-second bins of the run, against the CPS), the send lateness the workers measured
(booked time to the moment the request left; workers.metrics.send_lateness), the share of sends refused as
late (refused and booked again, per send that left), and the CPU ms per placed call of each process: the
workers together, the API, beat, Postgres (the bench database's backends and the server's background
processes), Redis, and the carrier (bench.process_cpu, from /proc between the campaign's start and its
completion); "dialer" sums all but the carrier. Postgres and Redis are shared with whatever else runs on
the machine: on a quiet machine only the bench uses them. Uses its own database (dialer_bench_precision)
and Redis prefix; Postgres and Redis must be running.

`--profile DIR` also records a py-spy profile of every worker and the API during each scenario
(DIR/<rate>cps-worker0.txt, collapsed stacks; bench.profiling): where a missed target's time goes. py-spy
costs CPU on the same cores, so take the figures from a run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from bench import conditions
from bench.dialing_bench import (
    ALL_ANSWERED,
    API_USER,
    APP_ID,
    CARRIER_RETRIES,
    OUT,
    REPO,
    prepare,
)
from bench.process_cpu import CpuMeter, per_call_ms
from bench.profiling import profiled
from bench.stack_processes import DIALER_GROUPS, stack_groups, stack_roles

T = TypeVar("T")
JITTER_MS = (5.0, 5.0)  # mean, spread: 5 ms ± 5 ms
WARM_UP = (50, 150)  # CPS, calls: about three seconds, enough for every worker thread to have dialed
PAUSE_RATE = 100
PAUSE_AFTER_S = 6.0

# As reported in issues 13 and 18, for the table's "before" column. Issue 18's runs had this bench's old
# defaults: the carrier at nice -15, the sender threads at -10 (now --priority).
REPORTED_BEFORE = {
    ("20", False): "issue 18: 96.5%; issue 13: max 20, one 429, 88.6%",
    ("200", False): "issue 18: 49.6% and 42.9%, 0 429s, 2,341 and 2,620 of 3,000 refused late; "
                    "issue 13: max 193-198, 1-2 429s a run, 86.4-87.8%",
    ("500", False): "not measured",
    ("pause", False): "issue 13: 126 calls after pause returned (100 CPS)",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: int
    calls: int
    jitter: bool
    target_used: float  # budget used, percent


SCENARIOS = [
    Scenario("20", 20, 400, False, 96.0),
    Scenario("200", 200, 3000, False, 96.0),
    Scenario("500", 500, 7500, False, 90.0),
    Scenario("20", 20, 400, True, 94.0),
    Scenario("200", 200, 3000, True, 94.0),
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _lateness(directory: Path, since: float) -> dict[str, Any]:
    from workers.metrics.send_lateness import read_samples

    samples = read_samples(directory, since)
    refused = len(read_samples(directory, since, refused=True))
    return {
        "sends_timed": len(samples),
        "refused_late": refused,
        # Per send that left, as issue 18 counts it ("2,341 of the 3,000 sends were refused as late").
        "refused_late_pct": round(100.0 * refused / len(samples), 1) if samples else None,
        "late_p50_ms": round(_percentile(samples, 0.50) * 1000, 2),
        "late_p99_ms": round(_percentile(samples, 0.99) * 1000, 2),
        "late_max_ms": round(max(samples, default=0.0) * 1000, 2),
    }


def _per_second(times: list[float]) -> list[int]:
    """Arrivals in each 1-second bin from the first arrival."""
    if not times:
        return []
    first = min(times)
    bins = [0] * (int(max(times) - first) + 1)
    for t in times:
        bins[int(t - first)] += 1
    return bins


def _full_seconds_used(times: list[float], rate: int) -> float | None:
    """Mean arrivals per whole 1-second bin from the first arrival (the last, partial bin left out), as a
    percentage of the budget."""
    full = _per_second(times)[:-1]
    if not full:
        return None
    return round(100.0 * sum(full) / len(full) / rate, 1)


def retrying(what: str, action: Callable[[], T], attempts: int = 90) -> T:
    """The machine's Postgres is shared and sometimes has no connection to spare ("too many clients"):
    try again for a while rather than lose the run."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # ServiceUnavailable, OperationalError, a failed CLI
            if attempt == attempts - 1:
                raise
            print(f"{what}: {exc}; trying again", file=sys.stderr, flush=True)
            time.sleep(1.0)
    raise AssertionError("unreachable")


class Bench:
    """One simulator and one stack for every scenario; each scenario has its own simulated account. One
    Postgres connection is held for the whole run."""

    def __init__(self, sim: Any, lateness_root: Path, stack: Any, label: str,
                 profile_dir: Path | None = None) -> None:
        from campaigns.config import get_settings
        from campaigns.db import connect

        self.sim = sim
        self.lateness_root = lateness_root
        self.label = label
        self.seq = 0
        self.jitter_ms = JITTER_MS
        self.conn = retrying("connect", lambda: connect(autocommit=True))
        settings = get_settings()
        self.processes = stack_groups(stack, sim.process.pid, settings.psycopg_url, settings.redis_url)
        roles = stack_roles(stack)
        self.profiled_pids = {**{f"worker{i}": pid for i, pid in enumerate(roles["workers"])},
                              **{f"api{i}": pid for i, pid in enumerate(roles["api"])}}
        self.profile_dir = profile_dir

    def _profiled(self, scenario: Scenario) -> AbstractContextManager[Any]:
        """With --profile, py-spy on every worker and the API for the scenario (bench.profiling)."""
        if self.profile_dir is None or scenario.name == "warm-up":
            return nullcontext()
        prefix = f"{scenario.rate}cps{'-jitter' if scenario.jitter else ''}"
        return profiled(self.profiled_pids, self.profile_dir, prefix)

    def _account(self, rate: int) -> tuple[str, int]:
        from campaigns.accounts import add_account

        self.seq += 1
        auth_id = f"55501{self.seq:02d}"
        self.sim.configure({"accounts": [{
            "provider": "bandwidth", "auth_id": auth_id, "auth_token": "pw", "cps": rate,
            "max_concurrent": 10**6, "application_id": APP_ID, "api_username": API_USER,
        }]})
        account_id = add_account(
            self.conn, name=f"precision-{self.seq}", provider="bandwidth", auth_id=auth_id, auth_token="pw",
            cps=rate, max_concurrent=10**6, base_url=self.sim.base_url,
            options={"application_id": APP_ID, "api_username": API_USER},
        )
        return auth_id, account_id

    def _load(self, name: str, rate: int, calls: int) -> tuple[str, int, int]:
        """A simulated account of `rate` CPS and a loaded campaign of `calls`, not started yet."""
        from tests.engine_harness import load_campaign, numbers

        auth_id, account_id = self._account(rate)
        phones = numbers(calls, start=self.seq * 10000)
        campaign_id = retrying("load", lambda: load_campaign(f"precision-{self.seq}-{name}", phones))
        return auth_id, account_id, campaign_id

    def _begin(self, campaign_id: int, account_id: int) -> None:
        from tests.engine_harness import prepare_and_start

        prepare_and_start(
            self.conn, campaign_id, account_id,
            provider_options={"ring_timeout": 30, "time_limit": 60, "track_ringing": False},
        )

    def _start(self, name: str, rate: int, calls: int) -> tuple[str, int]:
        auth_id, account_id, campaign_id = self._load(name, rate, calls)
        self._begin(campaign_id, account_id)
        return auth_id, campaign_id

    def _accepted(self, auth_id: str) -> int:
        """Calls the carrier accepted so far (its stats, cheaper than the ledger)."""
        account = self.sim.stats()["accounts"].get(auth_id)
        return int(account["accepted"]) if account else 0

    def _arrivals(self, auth_id: str) -> list[float]:
        return [c["received_at"] for c in self.sim.ledger()["calls"] if c["account"] == auth_id]

    def _jitter(self, on: bool) -> None:
        mean, spread = self.jitter_ms if on else (0.0, 0.0)
        self.sim.configure({"limiter": {"kind": "sliding_window",
                                        "arrival_jitter_ms": {"mean": mean, "spread": spread}}})

    def run(self, scenario: Scenario) -> dict[str, Any]:
        from tests.engine_harness import max_in_window
        from tests.polling import wait_for

        self._jitter(scenario.jitter)
        since = time.time()
        started = time.monotonic()
        auth_id, account_id, campaign_id = self._load(scenario.name, scenario.rate, scenario.calls)
        conn = self.conn
        # CPU from the campaign's start to its completion: the loader's work (this process) is not in it.
        meter = CpuMeter(self.processes)
        with meter.sampling(), self._profiled(scenario):
            self._begin(campaign_id, account_id)
            wait_for(
                lambda: conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone()
                == ("completed",),
                timeout=scenario.calls / scenario.rate * 6 + 60, interval=0.5, what="campaign completed",
            )
        times = self._arrivals(auth_id)
        stats = self.sim.stats()["accounts"][auth_id]
        return {
            "scenario": f"{scenario.rate} CPS" + (
                f" + jitter {self.jitter_ms[0]:g}±{self.jitter_ms[1]:g} ms" if scenario.jitter else ""
            ),
            "run": self.label, "rate": scenario.rate, "jitter": scenario.jitter, "calls": len(times),
            "max_in_1s": max_in_window(times), "429s": stats["rejected_429"],
            "used_pct": _full_seconds_used(times, scenario.rate), "target_used_pct": scenario.target_used,
            "duplicates": stats["duplicate_dials"], "complete_s": round(time.monotonic() - started, 1),
            **_lateness(self.lateness_root, since),
            "cpu_ms_per_call": _cpu_per_call(meter.seconds, len(times)), "per_second": _per_second(times),
        }

    def run_pause(self, calls: int) -> dict[str, Any]:
        """Start a 100 CPS campaign, run `dialer campaign pause` after a few seconds, count the arrivals
        after it returned."""
        self._jitter(False)
        since = time.time()
        auth_id, campaign_id = self._start("pause", PAUSE_RATE, calls)
        first = time.monotonic()
        while not self._accepted(auth_id) and time.monotonic() - first < 30:
            time.sleep(0.1)
        time.sleep(PAUSE_AFTER_S)
        dialer = Path(sys.executable).parent / "dialer"
        command = [str(dialer)] if dialer.exists() else [sys.executable, "-m", "workers.entrypoints.cli"]
        pause = [*command, "campaign", "pause", str(campaign_id)]
        if self.conn.execute("SELECT state FROM campaign WHERE id = %s", (campaign_id,)).fetchone() != (
            "running",
        ):
            raise RuntimeError("the pause scenario's campaign ended before the pause: raise --pause-calls")
        retrying("dialer campaign pause",
                 lambda: subprocess.run(pause, check=True, cwd=REPO, stdout=subprocess.DEVNULL), attempts=5)
        returned = time.time()
        time.sleep(5.0)  # anything still booked or in flight lands by then
        times = self._arrivals(auth_id)
        after = sum(1 for t in times if t > returned)
        rejected_at = [round(r["time"] - returned, 3) for r in self.sim.ledger()["rejections"]
                       if r.get("account") == auth_id and "time" in r]
        return {
            "scenario": f"pause at {PAUSE_RATE} CPS", "run": self.label, "rate": PAUSE_RATE,
            "calls": len(times),
            "after_pause": after, "target_after_pause": PAUSE_RATE, "429s_s_from_pause": rejected_at,
            "429s": self.sim.stats()["accounts"][auth_id]["rejected_429"],
            **_lateness(self.lateness_root, since),
        }


def _cpu_per_call(seconds: dict[str, float], calls: int) -> dict[str, float]:
    """CPU ms per placed call of each process group, and "dialer": all of them but the carrier."""
    ms = per_call_ms(seconds, calls)
    return {**ms, "dialer": round(sum(ms.get(group, 0.0) for group in DIALER_GROUPS), 2)}


CPU_COLUMNS = ("workers", "api", "beat", "postgres", "redis", "dialer", "carrier")


def _table(rows: list[dict[str, Any]], load: str) -> str:
    lines = [
        f"load average at start: {load}",
        "| scenario | run | calls | most in any 1 s | 429s | budget used (target) | sends refused late "
        "(share of sends) | lateness p50 / p99 / max ms | reported before |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        late = f"{r['late_p50_ms']} / {r['late_p99_ms']} / {r['late_max_ms']}"
        refused = f"{r.get('refused_late', '-')} ({r.get('refused_late_pct', '-')}%)"
        if "after_pause" in r:
            before = REPORTED_BEFORE.get(("pause", False), "-")
            lines.append(f"| {r['scenario']} | {r['run']} | {r['calls']} | - | {r['429s']} "
                         f"| {r['after_pause']} calls after pause returned (≤ {r['target_after_pause']}) "
                         f"| {refused} | {late} | {before} |")
            continue
        before = REPORTED_BEFORE.get((str(r["rate"]), r["jitter"]), "-")
        lines.append(f"| {r['scenario']} | {r['run']} | {r['calls']} | {r['max_in_1s']} | {r['429s']} "
                     f"| {r['used_pct']}% (≥ {r['target_used_pct']}%) | {refused} | {late} | {before} |")
    lines += [
        "",
        "CPU ms per placed call, per process (dialer = workers + API + beat + Postgres + Redis; the carrier "
        "apart)",
        "| scenario | run | " + " | ".join(CPU_COLUMNS) + " |",
        "|---|---|" + "---|" * len(CPU_COLUMNS),
    ]
    for r in rows:
        if "cpu_ms_per_call" in r:
            cpu = r["cpu_ms_per_call"]
            lines.append(f"| {r['scenario']} | {r['run']} | "
                         + " | ".join(str(cpu.get(c, "-")) for c in CPU_COLUMNS) + " |")
    return "\n".join(lines)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="20,200,500", help="CPS budgets to run")
    parser.add_argument("--no-jitter", action="store_true", help="skip the jittered runs")
    parser.add_argument("--jitter-only", action="store_true", help="only the jittered runs")
    parser.add_argument("--jitter-ms", default="5,5", help="mean,spread of the jittered runs")
    parser.add_argument("--no-pause", action="store_true")
    parser.add_argument("--isolated-429", type=float, default=0.0,
                        help="fraction of requests the carrier refuses with a lone 429 (AIMD comparison)")
    parser.add_argument("--pause-calls", type=int, default=4000)
    parser.add_argument("--calls-factor", type=float, default=1.0,
                        help="scale every scenario's calls (e.g. 0.2 for a short smoke run)")
    parser.add_argument("--label", default="", help="a name for the saved JSON (bench/out)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy profiles of every worker and the API, per scenario, into DIR "
                             "(costs CPU: a profiled run's figures are not figures)")
    conditions.add_arguments(parser)
    parser.add_argument("--warm-up-calls", type=int, default=WARM_UP[1],
                        help="calls of the unmeasured warm-up campaign (0: none: the first scenario is cold)")
    args = parser.parse_args(argv)
    run = conditions.from_arguments(args)
    prepare("dialer_bench_precision")
    import workers.providers.registry  # noqa: F401  (the adapters declare the provider kinds)
    from tests.engine_harness import running_stack
    from tests.sim_helpers import start_simulator
    from workers.metrics.send_lateness import SAMPLES_DIR_ENV

    rates = {r for r in args.only.split(",") if r}
    chosen = [replace(s, calls=max(1, round(s.calls * args.calls_factor))) for s in SCENARIOS
              if str(s.rate) in rates
              and not (args.no_jitter and s.jitter) and not (args.jitter_only and not s.jitter)]
    load = _load()
    root = Path(tempfile.mkdtemp(prefix="precision-lateness-"))
    os.environ[SAMPLES_DIR_ENV] = str(root)
    os.environ["DIALER_SENDER_NICE"] = str(run.sender_nice)
    rows: list[dict[str, Any]] = []
    config = {"accounts": [], "outcomes": ALL_ANSWERED, "callbacks": CARRIER_RETRIES}
    with (conditions.busy_core(run.busy_core), start_simulator(config, speed=30, seed=5) as sim,
          running_stack(workers=4, threads=8) as stack):
        carrier_nice = sim.own_cores(run.carrier_nice) if run.carrier_nice else 0
        label = run.label(carrier_nice)
        print(f"run: {label}", flush=True)
        bench = Bench(sim, root, stack, label, args.profile)
        if args.warm_up_calls:
            bench.run(Scenario("warm-up", WARM_UP[0], args.warm_up_calls, False, 0.0))
        if args.isolated_429:
            sim.configure({"faults": {"api_429": args.isolated_429}})
        mean, spread = (float(x) for x in args.jitter_ms.split(","))
        bench.jitter_ms = (mean, spread)
        for scenario in chosen:
            rows.append(bench.run(scenario))
            print(json.dumps(rows[-1]), flush=True)
        if not args.no_pause:
            rows.append(bench.run_pause(args.pause_calls))
            print(json.dumps(rows[-1]), flush=True)
    from campaigns.config import get_settings
    from workers.dialing.send_booking import BUDGET_WINDOW_S

    settings = get_settings()
    meta = {"load_average": load, "window_s": BUDGET_WINDOW_S, "run": label, "sender_nice": run.sender_nice,
            "carrier_nice": carrier_nice, "busy_core": run.busy_core, "warm_up_calls": args.warm_up_calls,
            "aimd_factor": getattr(settings, "aimd_factor", None),
            "aimd_confirm_s": getattr(settings, "aimd_confirm_s", None), "load_average_end": _load()}
    print(json.dumps(meta))
    print(_table(rows, load))
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"precision_bench{'_' + args.label if args.label else ''}.json"
    (OUT / name).write_text(json.dumps({**meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
