"""The fault suite's harness: run a campaign through real processes (API, Celery workers, beat, the carrier
simulator) while something goes wrong, then count from the simulator's ledger and the database:

- dialed twice: destinations the carrier received more than once;
- stranded: destinations not final and past their deadline when the run ended (due or queued with the
  lease run out, or on an attempt open past its lease) by more than the grace of the beat tasks that
  own them: every non-final state has an owner and a deadline;
- lost results: hangup callbacks we answered 2xx that are not stored, applied and matched to an attempt;
- seconds over budget: 1-second windows (by arrival at the carrier, accepted or refused) holding more
  create requests' destinations than the CPS;
- 429s: create requests the carrier refused with 429.

    run = FaultRun(sim, stack, conn, name="kill-single", destinations=300, cps=50, bulk=False)
    run.start()
    run.until_complete(timeout=60, during=kill_a_worker_every(stack, 3.0))
    figures = run.figures()
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from campaigns.accounts import add_account
from tests.engine_harness import Stack, load_campaign, numbers, prepare_and_start
from tests.sim_helpers import RunningSimulator

FINAL = ("done", "failed", "invalid", "dnc", "cancelled", "expired", "unknown")
OPEN_ATTEMPT = ("dialing", "sent", "ringing", "answered")
REAPER_GRACE_S = 15.0  # the reaper runs every 5 s; an open attempt this long past its lease is stranded
QUICK_CALLS = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
               "talk_time": [2, 6], "ring_time": [1, 3]}
NO_RETRIES = {o: {"delay_s": 0, "max_attempts": 1} for o in ("busy", "no_answer", "failed", "unknown")}
FIGURES_FILE = os.environ.get("DIALER_FAULT_FIGURES")  # append each run's figures here (JSON lines)

_number_blocks = itertools.count(0)


@dataclass
class Figures:
    scenario: str
    destinations: int
    dialed: int
    dialed_twice: int
    stranded: int
    lost_results: int
    seconds_over_budget: int
    throttled_429: int
    final: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.scenario}: {self.destinations} destinations, dialed {self.dialed}, "
                f"dialed twice {self.dialed_twice}, stranded {self.stranded}, lost {self.lost_results}, "
                f"seconds over budget {self.seconds_over_budget}, 429s {self.throttled_429}, "
                f"{self.elapsed_s:.0f} s, final {self.final} {self.notes or ''}")


def seconds_over_budget(arrivals: list[tuple[float, int]], cps: float) -> int:
    """Whole seconds (from the first arrival) holding an arrival whose trailing window (t - 1, t] has more
    than `cps` destinations: 0 iff no 1-second window ever saw more than the budget."""
    events = sorted(arrivals)
    over: set[int] = set()
    lo = total = 0
    for t, n in events:
        total += n
        while events[lo][0] <= t - 1.0:
            total -= events[lo][1]
            lo += 1
        if total > cps:
            over.add(int(t - events[0][0]))
    return len(over)


class FaultRun:
    """One campaign on its own simulator account, counted when the run ends."""

    def __init__(self, sim: RunningSimulator, stack: Stack, conn: psycopg.Connection, *, name: str,
                 destinations: int, cps: float, bulk: bool = True, max_concurrent: int = 2000,
                 provider_options: dict[str, Any] | None = None) -> None:
        self.sim, self.stack, self.conn = sim, stack, conn
        self.name, self.size, self.cps, self.bulk = name, destinations, cps, bulk
        self.auth_id = f"MAFAULT{name.upper().replace('-', '')[:12]}{next(_number_blocks)}"
        self.token = f"tok-{name}"
        self.max_concurrent = max_concurrent
        self.options = {"ring_timeout": 20, "time_limit": 30, "bulk": bulk, **(provider_options or {})}
        self.campaign_id = 0
        self.account_id = 0
        self.started = 0.0
        self.ended = 0.0
        self.events: list[tuple[str, float]] = []  # (what, epoch seconds): faults injected, for the figures

    def start(self) -> None:
        # The carrier allows exactly our budget: any excess is a 429 and shows in the windows.
        account = {"provider": "plivo", "auth_id": self.auth_id, "auth_token": self.token, "cps": self.cps,
                   "max_concurrent": self.max_concurrent}
        self.sim.configure({"accounts": [account]})
        self.account_id = add_account(self.conn, name=f"fault-{self.auth_id}", provider="plivo",
                                      auth_id=self.auth_id, auth_token=self.token, cps=self.cps,
                                      max_concurrent=self.max_concurrent, base_url=self.sim.base_url)
        self.conn.commit()
        # Each run has its own carrier account, so the same numbers in another run never look like a redial.
        self.campaign_id = load_campaign(f"fault-{self.name}", numbers(self.size, area="917"))
        prepare_and_start(self.conn, self.campaign_id, self.account_id, provider_options=self.options,
                          retry_policy=NO_RETRIES)
        self.started = time.monotonic()

    def mark(self, what: str) -> None:
        """Note a fault injected now; each 429 is reported with its offset from the latest one before it."""
        self.events.append((what, time.time()))

    # progress -----------------------------------------------------------------------------------------
    def statuses(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM destination WHERE campaign_id = %s GROUP BY 1",
                                 (self.campaign_id,)).fetchall()
        self.conn.commit()
        return {r[0]: int(r[1]) for r in rows}

    def complete(self) -> bool:
        return sum(n for s, n in self.statuses().items() if s in FINAL) == self.size

    def dialed(self) -> int:
        return len({c["destination"] for c in self.calls()})

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sim.ledger()["calls"] if c["account"] == self.auth_id]

    def until_complete(self, timeout: float, during: Callable[[], None] | None = None,
                       every: float = 0.5, settle_s: float | None = None) -> bool:
        """Wait until every destination is final or `timeout`; call `during` every `every` s meanwhile.
        With `settle_s`, also stop once nothing has become final for that long, nothing is due now
        (`pending`) and nothing is stranded: what is left waits on a deadline still ahead (a retry's
        backoff, a queued lease, an ambiguous attempt's lease)."""
        deadline = time.monotonic() + timeout
        last_final, changed_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            statuses = self.statuses()
            final = sum(n for s, n in statuses.items() if s in FINAL)
            if final == self.size:
                self.ended = time.monotonic()
                return True
            if final != last_final:
                last_final, changed_at = final, time.monotonic()
            elif (settle_s is not None and time.monotonic() - changed_at > settle_s
                  and not statuses.get("pending") and not self._stranded()):
                break
            if during is not None:
                during()
            time.sleep(every)
        self.ended = time.monotonic()
        return False

    # figures ------------------------------------------------------------------------------------------
    def figures(self, settle_s: float = 30.0, **notes: Any) -> Figures:
        try:
            self.sim.wait_idle(settle_s)
        except TimeoutError:
            pass  # counted as it stands
        ledger = self.sim.ledger()
        calls = [c for c in ledger["calls"] if c["account"] == self.auth_id]
        per_destination = Counter(c["destination"] for c in calls)
        arrivals = [(c["received_at"], 1) for c in calls]
        arrivals += [(r["time"], r["destinations"])
                     for r in ledger["rejections"] if r["account"] == self.auth_id]
        stats = self.sim.stats()["accounts"].get(self.auth_id, {})
        heard = {cb["call_uuid"] for cb in ledger["callbacks"]
                 if cb["status"] is not None and 200 <= cb["status"] < 300}
        # Calls none of whose callbacks was ever delivered: only a status lookup can settle them.
        notes.setdefault("silent_calls", sum(1 for c in calls if c["call_uuid"] not in heard))
        if self.events:
            notes.setdefault("429s_after", [self._after_event(r["time"]) for r in ledger["rejections"]
                                            if r["account"] == self.auth_id])
        figures = Figures(
            scenario=self.name,
            destinations=self.size,
            dialed=len(per_destination),
            dialed_twice=sum(1 for n in per_destination.values() if n > 1),
            stranded=self._stranded(),
            lost_results=self._lost(ledger, {c["call_uuid"] for c in calls}),
            seconds_over_budget=seconds_over_budget(arrivals, self.cps),
            throttled_429=int(stats.get("rejected_429", 0)),
            final=self.statuses(),
            elapsed_s=(self.ended or time.monotonic()) - self.started,
            notes=notes,
        )
        if FIGURES_FILE:
            with Path(FIGURES_FILE).open("a") as out:
                out.write(json.dumps(asdict(figures)) + "\n")
        print(figures.line())
        return figures

    def _after_event(self, at: float) -> str:
        before = [(what, t) for what, t in self.events if t <= at]
        return f"{before[-1][0]}+{at - before[-1][1]:.1f}s" if before else f"start+{at:.0f}"

    def _stranded(self) -> int:
        """Non-final destinations past their deadline by more than the grace, and open attempts past their
        lease by as much (a destination and its attempt count once)."""
        row = self.conn.execute(
            """SELECT count(*) FROM destination d
               WHERE d.campaign_id = %(c)s AND d.status <> ALL(%(final)s) AND (
                 (d.status IN ('pending', 'retry_wait', 'queued')
                    AND coalesce(d.next_attempt_at, d.updated_at) < now() - make_interval(secs => %(grace)s))
                 OR EXISTS (SELECT 1 FROM call_attempt a WHERE a.destination_id = d.id
                    AND a.status = ANY(%(open)s)
                    AND a.lease_expires_at < now() - make_interval(secs => %(grace)s)))""",
            {"c": self.campaign_id, "final": list(FINAL), "open": list(OPEN_ATTEMPT),
             "grace": REAPER_GRACE_S},
        ).fetchone()
        self.conn.commit()
        assert row is not None
        return int(row[0])

    def _lost(self, ledger: dict[str, Any], ours: set[str]) -> int:
        """Hangups the carrier had answered 2xx that are not stored, applied and matched to an attempt."""
        acked = {cb["call_uuid"] for cb in ledger["callbacks"]
                 if cb["kind"] == "hangup" and cb["call_uuid"] in ours and cb["status"] is not None
                 and 200 <= cb["status"] < 300}
        if not acked:
            return 0
        rows = self.conn.execute(
            """SELECT DISTINCT e.call_uuid FROM call_event e JOIN call_attempt a ON a.id = e.attempt_id
               WHERE e.kind = 'hangup' AND e.call_uuid = ANY(%s) AND e.applied_at IS NOT NULL
                 AND a.campaign_id = %s AND a.call_uuid = e.call_uuid""",
            (list(acked), self.campaign_id),
        ).fetchall()
        self.conn.commit()
        return len(acked - {r[0] for r in rows})


class WorkerKiller:
    """`during` for FaultRun.until_complete: SIGKILL a random worker every `period` s (while `while_()`
    holds, if given) and start a new one in its place. `host=True` kills every worker at once instead,
    as when a host dies: whatever any of them held is certainly lost, so the scenario always tests it."""

    def __init__(self, stack: Stack, period: float, seed: int = 9, first_after: float | None = None,
                 while_: Callable[[], bool] | None = None, host: bool = False,
                 max_rounds: int | None = None) -> None:
        self.stack, self.period, self.while_, self.host = stack, period, while_, host
        self.max_rounds = max_rounds
        self.rounds = 0
        self.rng = random.Random(seed)
        self.next_at = time.monotonic() + (period if first_after is None else first_after)
        self.kills = 0
        self._index = itertools.count(100)
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            if time.monotonic() < self.next_at or not self.stack.workers:
                return
            if self.while_ is not None and not self.while_():
                return
            if self.max_rounds is not None and self.rounds >= self.max_rounds:
                return
            self.rounds += 1
            victims = list(self.stack.workers) if self.host else [self.rng.choice(self.stack.workers)]
            for victim in victims:
                self.stack.kill_worker(victim)
                self.stack.workers.remove(victim)
            for _ in victims:
                self.stack.start_worker(next(self._index))
            self.kills += len(victims)
            self.next_at = time.monotonic() + self.period


class KillAsTheClaimsEnd:
    """`during` for a kill scenario that always reaches the state where issue 9's stall lived: one random
    worker SIGKILLed every `period` s while the run still has destinations to claim, then, the moment the
    last one is claimed (nothing else due, the tail still queued in tasks), every worker at once. What the
    dead workers held is then left to the 30 s queued leases, with nothing else in the campaign due."""

    def __init__(self, stack: Stack, run: FaultRun, period: float) -> None:
        self.run = run
        self.single = WorkerKiller(stack, period=period, while_=lambda: bool(run.statuses().get("pending")))
        self.host = WorkerKiller(stack, period=0.0, host=True, max_rounds=1,
                                 while_=lambda: self._claims_ended())

    def _claims_ended(self) -> bool:
        # The tail is held by tasks: queued, or (a chunk of one-destination requests starts its attempts
        # together, workers.dialing.chunk_rows) dialing and not all sent yet. Waiting for `queued` alone
        # missed the moment when a fast chunk had started its whole tail, and the kill never came.
        statuses = self.run.statuses()
        return not statuses.get("pending") and bool(statuses.get("queued") or statuses.get("dialing"))

    @property
    def kills(self) -> int:
        return self.single.kills + self.host.kills

    def __call__(self) -> None:
        self.single()
        self.host()


def supervise(stack: Stack) -> Callable[[], None]:
    """`during` that restarts any worker that exited, as a process supervisor (compose's
    `restart: unless-stopped`, systemd) does. Needed when Redis restarts: the Redis transport of kombu
    5.7 ends a worker whose broker connection is lost with "Unrecoverable error: AttributeError
    ('NoneType' object has no attribute 'hostname')" (kombu#582 and kin)."""
    restarted = itertools.count(200)

    def restart_exited() -> None:
        for proc in [p for p in stack.workers if p.poll() is not None]:
            stack.workers.remove(proc)
            stack.start_worker(next(restarted))

    return restart_exited


def soak_seconds(default: float) -> float:
    """SOAK_SECONDS bounds every soak scenario's run time."""
    return float(os.environ.get("SOAK_SECONDS", default))
