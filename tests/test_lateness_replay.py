"""Send lateness replayed through the real CPS script (issue 18): whatever a host's sends do, no carrier
second gets more than the budget, and the budget used falls with the lateness, not off a cliff.

Each trace is a list of how late sends left their booked time, recorded by workers on a real run
(`DIALER_SEND_LATENESS_DIR`, workers.metrics.send_lateness; tests/data/lateness holds runs of
`python -m bench.precision_bench --only 200` on this 2-core machine loaded by other work, one of them from
before the Redis clock bound, when a slow booking reply counted as lateness) or made up to be worse. The
replay is a discrete-event run of 32 dialing threads at 200 CPS on the real Redis script with a replayed clock
(CpsLimiter.reserve's `now_us`): each thread books (the guard from its recent lateness, as
workers.dialing.send_booking does), its send leaves the next trace value late, or is refused and booked
again when that is past its allowed lateness; the leave is reported to Redis COALESCE_S later (the longest
the flusher waits). The carrier may see each send anywhere from its booked time to its leave plus
NETWORK_S: the check counts every window against the worst of those, so it holds for any network.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from workers.dialing.send_booking import (
    BOOKING_HORIZON_S,
    LATENESS_QUANTILE,
    NETWORK_S,
    allowed_lateness_s,
    guard_for,
    handoff_lead_s,
)
from workers.metrics.send_lateness import RecentSeconds
from workers.ratelimit.cps import CpsLimiter, LeftSend, micros_up, reach_keys
from workers.ratelimit.left_sends import COALESCE_S

SEC = 1_000_000
TRACES = Path(__file__).parent / "data" / "lateness"
RATE = 200
THREADS = 32
SENDS = 2400  # 12 s at 200 CPS
WORK_AFTER_SEND_S = 0.004  # a thread's own work between its send leaving and its next booking
_accounts = itertools.count(7_000_000)


def recorded(name: str) -> list[float]:
    """The lateness values of a recorded trace (`<epoch> <seconds>[ refused]` lines, as workers write)."""
    return [float(line.split()[1]) for line in (TRACES / name).read_text().splitlines() if line.strip()]


def worst_window(intervals: list[tuple[float, float]]) -> int:
    """The most sends that can reach the carrier in one 1-second window (c - 1, c], each anywhere within its
    interval [first, last] (seconds, compared in whole microseconds as the script does): sends starting by c
    less those whose last moment is at or before c - 1."""
    starts = sorted(round(s * SEC) for s, _ in intervals)
    ends = sorted(round(e * SEC) for _, e in intervals)
    worst, ended = 0, 0
    for started, c in enumerate(starts, start=1):
        while ended < len(ends) and ends[ended] <= c - SEC:
            ended += 1
        worst = max(worst, started - ended)
    return worst


@dataclass
class Replay:
    sent: list[tuple[float, float]] = field(default_factory=list)  # (booked, leave + NETWORK_S), sim seconds
    refused: int = 0

    def used(self) -> float:
        """Sends per second over the steady part (after the first 2 s, before the last 1 s), against RATE."""
        first = min(s for s, _ in self.sent)
        lo, hi = first + 2.0, max(s for s, _ in self.sent) - 1.0
        return sum(1 for s, _ in self.sent if lo <= s < hi) / ((hi - lo) * RATE)


def replay(client: redis.Redis, lateness: list[float]) -> Replay:
    limiter = CpsLimiter(client)
    account = next(_accounts)
    base_us = int(client.time()[0]) * SEC
    now = [0.0]
    recent = RecentSeconds(clock=lambda: now[0])
    late = itertools.cycle(lateness)
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    out = Replay()

    def at(t: float, kind: str, what: object = None) -> None:
        heapq.heappush(events, (t, next(order), kind, what))

    for thread in range(THREADS):
        at(thread * 0.001, "book")
    booked = 0
    while events and booked < SENDS:
        now[0], _, kind, what = heapq.heappop(events)
        if kind == "report":
            assert isinstance(what, LeftSend)
            limiter.record_left([what])
            continue
        guard = guard_for(recent.quantile(LATENESS_QUANTILE))
        grant = limiter.reserve(
            account, None, 1, RATE, None, BOOKING_HORIZON_S, 1.0 + guard, handoff_lead_s(1),
            now_us=base_us + int(now[0] * SEC),
        )
        if not grant.granted:
            at(now[0] + grant.retry_after_s, "book")
            continue
        booked += 1
        due_us = int(grant.token.split(":")[0]) - base_us
        due = due_us / SEC
        lateness = next(late)
        recent.add(lateness)
        if lateness > allowed_lateness_s(guard):  # refused as too late: given back, booked again
            out.refused += 1
            assert limiter.refund(account, None, grant)
            at(due + lateness, "book")
            continue
        reach_us = due_us + micros_up(lateness + NETWORK_S)
        out.sent.append((due, reach_us / SEC))
        # Reported as the flusher would at the latest (a booking of the same process may carry it sooner).
        at(due + lateness + COALESCE_S, "report", LeftSend(reach_keys(account, None), grant.token,
                                                           base_us + reach_us))
        at(due + lateness + WORK_AFTER_SEND_S, "book")
    return out


def quiet_host() -> list[float]:
    rng = random.Random(1)
    return [rng.expovariate(1 / 0.002) for _ in range(1000)]


def busy_host() -> list[float]:
    """Most sends 5-25 ms late, one in twenty 40-120 ms (the OS gave the core to something else)."""
    rng = random.Random(2)
    return [rng.uniform(0.04, 0.12) if rng.random() < 0.05 else rng.uniform(0.005, 0.025)
            for _ in range(1000)]


def stalls() -> list[float]:
    """A host that stops for 300 ms now and then: every send of the stall leaves late by up to 300 ms."""
    values: list[float] = []
    for burst in range(20):
        values += [0.003] * 40 + [0.3 - 0.005 * i for i in range(60)] if burst % 4 == 3 else [0.003] * 100
    return values


SYNTHETIC = {"quiet host": quiet_host, "busy host": busy_host, "stalls": stalls}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_no_carrier_second_gets_more_than_the_budget_whatever_the_lateness(
    redis_client: redis.Redis, name: str
) -> None:
    result = replay(redis_client, SYNTHETIC[name]())
    assert worst_window(result.sent) <= RATE


def recorded_traces() -> list[str]:
    return sorted(p.name for p in TRACES.glob("*.txt")) if TRACES.is_dir() else []


@pytest.mark.parametrize("name", recorded_traces())
def test_recorded_traces_keep_the_budget_use_most_of_it_and_refuse_almost_nothing(
    redis_client: redis.Redis, name: str
) -> None:
    trace = recorded(name)
    result = replay(redis_client, trace)
    assert worst_window(result.sent) <= RATE
    mean = sum(trace) / len(trace)
    # No cliff: these are loaded hosts (12-50 ms late on average, tails past 150 ms), where the design
    # before issue 18 refused most sends. Each send costs its own lateness once; where lateness comes in
    # bursts the booking must wait out the burst's spill into the next second, so a little more is lost
    # than the mean alone would say.
    said = f"{result.used():.3f} with mean {mean * 1000:.1f} ms"
    assert result.used() >= 0.90, said
    assert result.used() >= 0.95 / (1.0 + NETWORK_S + mean), said
    assert result.refused <= 0.02 * SENDS


def test_the_busy_hosts_budget_falls_with_its_lateness_not_off_a_cliff(redis_client: redis.Redis) -> None:
    quiet = replay(redis_client, quiet_host()).used()
    busy = replay(redis_client, busy_host()).used()
    trace = busy_host()
    mean = sum(trace) / len(trace)
    assert quiet >= 0.96
    assert busy >= 0.98 / (1.0 + NETWORK_S + mean), f"{busy:.3f} with mean {mean * 1000:.1f} ms"


def test_the_worst_window_counts_each_send_anywhere_within_its_interval() -> None:
    # Two sends 1.05 s apart by booking, the first able to reach the carrier 60 ms after: one window can
    # hold both.
    assert worst_window([(0.0, 0.06), (1.05, 1.05)]) == 2
    assert worst_window([(0.0, 0.04), (1.05, 1.05)]) == 1
    assert worst_window([(0.0, 0.0), (1.0, 1.0)]) == 1  # a half-open second
