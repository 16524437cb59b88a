"""Timed per-account faults: an account answers its call-create requests 401, 402, 5xx or placed-but-5xx
(or the whole listener refuses connections) from a given instant for a given time, then recovers.

Times are real seconds on the simulator's monotonic clock, never scaled by --speed: a fault stands for the
carrier's own outage, which lasts as long as it lasts whatever the pace of the simulated calls. `start_in` is
counted from when the schedule is given (the simulator's start for the config's `scheduled_faults`, the
request for `POST /_sim/faults/schedule`).

Pure logic: the armed windows and "which fault is active for this account now" (the entries are parsed and
validated by config.parse_scheduled_faults); the create template (providers/base.py) asks, and app.py arms
the listener for "refused".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simulator.config import FaultSpec


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """One armed entry: its window [start, end) on the monotonic clock, and the same in epoch seconds (fixed
    when armed, so every listing shows the same instants)."""

    account: str
    fault: str
    start: float
    end: float
    start_wall: float
    end_wall: float

    def state(self, now: float) -> str:
        return "pending" if now < self.start else "active" if now < self.end else "over"


class FaultSchedule:
    """The armed windows; `active` is asked on every create request, so it is cheap when empty."""

    def __init__(self) -> None:
        self.entries: list[ScheduledFault] = []

    def add(self, specs: list[FaultSpec], now: float | None = None) -> list[ScheduledFault]:
        """Arm `specs` relative to `now` (monotonic; default: now); returns the new windows."""
        now = time.monotonic() if now is None else now
        wall = time.time() - (time.monotonic() - now)
        added = [ScheduledFault(s.account, s.fault, now + s.start_in, now + s.start_in + s.seconds,
                                wall + s.start_in, wall + s.start_in + s.seconds) for s in specs]
        self.entries.extend(added)
        return added

    def clear(self) -> None:
        self.entries.clear()

    def active(self, account: str, now: float | None = None) -> str | None:
        """The fault `account`'s create requests are under now, or None ("refused" is never answered here:
        the listener is closed for it). Overlapping windows: the one that started last wins (then the one
        added last), so a later window overrides an earlier one for its duration."""
        if not self.entries:
            return None
        now = time.monotonic() if now is None else now
        best: ScheduledFault | None = None
        for entry in self.entries:
            if entry.account == account and entry.fault != "refused" and entry.start <= now < entry.end and (
                    best is None or entry.start >= best.start):
                best = entry
        return best.fault if best is not None else None

    def listing(self, now: float | None = None) -> dict[str, Any]:
        """Every window with its monotonic bounds, the same in epoch seconds, and its state now."""
        now = time.monotonic() if now is None else now
        return {"now": now, "faults": [
            {"account": e.account, "fault": e.fault, "start": e.start, "end": e.end,
             "start_wall": e.start_wall, "end_wall": e.end_wall, "state": e.state(now)}
            for e in self.entries]}
