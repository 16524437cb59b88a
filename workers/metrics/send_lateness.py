"""Send lateness: how long after its booked time each provider request left this worker.

A send that leaves late can reach the carrier inside the same sliding second as a later one, so lateness is
what an operator watches to see that a host is too loaded to keep its budget. It is a Prometheus histogram
(`dialer_send_lateness_seconds`) and a counter of sends refused because they would have left too late
(`dialer_send_refused_late_total`, each re-booked rather than sent). Both live in the default registry of
the process; exposing it is the metrics endpoint's job (workers.metrics.counters.registry).

For benchmarks, `DIALER_SEND_LATENESS_DIR` names a directory where each process also appends its raw
samples (`<epoch time> <seconds late>[ refused]`, one a line, file `<pid>.txt`), so exact percentiles and
the maximum of any stretch of a run can be read afterwards.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from prometheus_client import Counter, Histogram

from campaigns.config import get_settings

# The variable behind Settings.send_lateness_dir, named for the benchmark that sets it for its workers.
SAMPLES_DIR_ENV = "DIALER_SEND_LATENESS_DIR"

# Fine at the low end, where a healthy host lives (a guard of a few tens of ms), coarse above it.
LATENESS_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
)


SEND_LATENESS = Histogram(
    "dialer_send_lateness_seconds",
    "How late a request left after its booked send time (booked CPS slot vs the moment it went out)",
    buckets=LATENESS_BUCKETS,
)
SENDS_REFUSED_LATE = Counter(
    "dialer_send_refused_late",
    "Provider requests not sent because they would have left too late for the CPS window; re-booked",
)


class RecentSeconds:
    """This process's send lateness over the last `span_s` seconds (at most `size` values; refused sends
    included), for the booking's guard (workers.dialing.send_booking.guard_for): a host that sends later
    asks for a wider window. Bounded in time, not only in count: at 20 CPS a few hundred values reach back
    a minute, and one slow second at a worker's start (imports, first connections) kept every later
    booking on the widest window long after the host was keeping time again (bench/RESULTS.md, "Send
    precision, second session")."""

    def __init__(self, size: int = 256, span_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._values: deque[tuple[float, float]] = deque(maxlen=size)
        self._span_s = span_s
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append((self._clock(), seconds))

    def quantile(self, q: float) -> float:
        """The q-quantile of the values of the last span_s seconds; 0 when there are none."""
        oldest = self._clock() - self._span_s
        with self._lock:
            while self._values and self._values[0][0] < oldest:
                self._values.popleft()
            ordered = sorted(value for _, value in self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


RECENT = RecentSeconds()

_lock = threading.Lock()
_samples: TextIO | None = None
_samples_pid = 0


def _sample_file() -> TextIO | None:
    global _samples, _samples_pid
    directory = get_settings().send_lateness_dir
    if not directory:
        return None
    pid = os.getpid()
    if _samples is None or _samples_pid != pid:  # a forked child writes its own file
        Path(directory).mkdir(parents=True, exist_ok=True)
        _samples = open(Path(directory) / f"{pid}.txt", "a", buffering=1)  # noqa: SIM115 (kept open)
        _samples_pid = pid
    return _samples


def _write_sample(late: float, refused: bool) -> None:
    with _lock:
        out = _sample_file()
        if out is not None:
            out.write(f"{time.time():.6f} {late:.6f}{' refused' if refused else ''}\n")


def observe_lateness(seconds: float) -> None:
    """Record one send that left `seconds` after its booked time (never negative)."""
    late = max(0.0, seconds)
    SEND_LATENESS.observe(late)
    RECENT.add(late)
    _write_sample(late, refused=False)


def observe_refused_late(seconds: float = 0.0) -> None:
    """Record a send refused because it would have left `seconds` after its booked time (it is re-booked)."""
    SENDS_REFUSED_LATE.inc()
    RECENT.add(max(0.0, seconds))
    _write_sample(max(0.0, seconds), refused=True)


def read_samples(
    directory: str | Path, since: float = 0.0, until: float = float("inf"), *, refused: bool = False
) -> list[float]:
    """The lateness of every send (or, with `refused`, every refused send) the processes recorded under
    `directory` between two epoch times."""
    values: list[float] = []
    for path in Path(directory).glob("*.txt"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and since <= float(fields[0]) <= until and (len(fields) == 3) == refused:
                values.append(float(fields[1]))
    return values
