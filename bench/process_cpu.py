"""CPU time each process of a benchmark used over one scenario, from /proc/<pid>/stat (utime + stime).

    meter = CpuMeter(lambda: {"workers": worker_pids, "carrier": [sim_pid]})
    with meter.sampling():   # start, a sample every interval, stop
        ...the scenario...
    meter.seconds            # {"workers": 3.1, "carrier": 0.4}

Processes are named in groups, and a group's pids are asked for again at every sample, so a group whose
members come and go (Postgres's backends of the bench's database) is followed: a process that exits between
two samples counts up to its last sample (at most one interval of its CPU is lost), and one born during the
scenario counts from zero. The pure part (`parse_stat`, `used_seconds`) is apart from reading /proc.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

PidGroups = Callable[[], Mapping[str, Iterable[int]]]


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this module reads; times in clock ticks."""

    ppid: int
    utime: int
    stime: int
    starttime: int  # ticks after boot

    @property
    def cpu_seconds(self) -> float:
        return (self.utime + self.stime) / CLOCK_TICKS


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name (field 2) is in parentheses and may itself hold spaces
    and parentheses, so the fields are counted from the last ')'."""
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
    return ProcStat(ppid=int(fields[1]), utime=int(fields[11]), stime=int(fields[12]),
                    starttime=int(fields[19]))


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat, or None once it is gone."""
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def boot_ticks() -> int:
    """Clock ticks since boot now, the unit of ProcStat.starttime."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * CLOCK_TICKS)


def used_seconds(first: Mapping[int, float], last: Mapping[int, float]) -> float:
    """CPU seconds a group used: each process's last reading less its first (0 for a process born after
    the start, which has none)."""
    return sum(max(0.0, cpu - first.get(pid, 0.0)) for pid, cpu in last.items())


class CpuMeter:
    """CPU seconds per group of processes between start() and stop(); sample() between them keeps the
    processes that exit counted."""

    def __init__(self, groups: PidGroups) -> None:
        self._groups = groups
        self._pids: dict[str, set[int]] = {}
        self._first: dict[str, dict[int, float]] = {}
        self._last: dict[str, dict[int, float]] = {}
        self._started_ticks = 0
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def _current_pids(self) -> dict[str, set[int]]:
        try:
            return {name: set(pids) for name, pids in self._groups().items()}
        except Exception:  # a group's source is down (Postgres mid-outage): keep the pids it had
            return self._pids

    def start(self) -> None:
        with self._lock:
            self._pids = self._current_pids()
            self._started_ticks = boot_ticks()
            self._first = {name: {} for name in self._pids}
            self._last = {name: {} for name in self._pids}
            for name, pids in self._pids.items():
                for pid in pids:
                    stat = read_stat(pid)
                    if stat is not None:
                        self._first[name][pid] = self._last[name][pid] = stat.cpu_seconds

    def sample(self) -> None:
        with self._lock:
            self._pids = self._current_pids()
            for name, pids in self._pids.items():
                first = self._first.setdefault(name, {})
                last = self._last.setdefault(name, {})
                for pid in pids:
                    stat = read_stat(pid)
                    if stat is None:
                        continue
                    if pid not in first and stat.starttime <= self._started_ticks:
                        # Older than the scenario but not seen at its start: count from now (undercounts
                        # a little rather than charging the scenario with its whole past).
                        first[pid] = stat.cpu_seconds
                    last[pid] = stat.cpu_seconds

    def stop(self) -> dict[str, float]:
        """Take a last sample; CPU seconds per group since start()."""
        self.sample()
        with self._lock:
            self.seconds = {name: used_seconds(self._first.get(name, {}), last)
                            for name, last in self._last.items()}
        return self.seconds

    @contextmanager
    def sampling(self, interval: float = 0.5) -> Iterator[CpuMeter]:
        """start(), a sample every `interval` seconds from a daemon thread, stop() on the way out."""
        self.start()
        done = threading.Event()

        def loop() -> None:
            while not done.wait(interval):
                self.sample()

        thread = threading.Thread(target=loop, name="cpu-meter", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.stop()


def per_call_ms(seconds: Mapping[str, float], calls: int) -> dict[str, float]:
    """CPU ms per call of each group."""
    return {name: round(1000.0 * s / calls, 2) if calls else 0.0 for name, s in seconds.items()}
