"""What `dialer demo --failover` concludes, from what the two carriers saw (their simulators' ledgers) and
the primary's circuit changes: how many calls each carrier placed, when the breaker opened, how long until
the backup took over, whether anyone was dialed twice, the 429s, and whether the primary took attempts again
after it recovered. Pure: workers.entrypoints.demo_failover reads the figures and prints the lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Carrier:
    """One carrier as the demo shows it: a label ("plivo primary"), what it placed and its 429s."""

    label: str
    received_at: Sequence[float]  # wall-clock instants the carrier took each call
    destinations: Sequence[str]  # the number of each call, in the same order
    throttled: int  # 429s it answered


@dataclass(frozen=True)
class Change:
    """A change of the primary's circuit: its new state, why, and when (wall clock)."""

    state: str
    reason: str | None
    at: float


@dataclass(frozen=True)
class FailoverSummary:
    calls: dict[str, int]  # carrier label -> calls it placed
    numbers: int  # distinct numbers placed across both carriers
    dialed_twice: dict[str, int]  # number -> calls, for each placed more than once
    throttled: dict[str, int]  # carrier label -> 429s
    fault_start: float
    fault_seconds: float
    opened_after_s: float | None  # the primary's circuit opened this long after the failure began
    took_over_after_s: float | None  # the backup's first call after the failure began
    returned_after_s: float | None  # the primary's first call after its failure ended (from its start)
    returned_calls: int  # the primary's calls after its failure ended
    changes: tuple[tuple[str, float, str | None], ...]  # (state, seconds after the failure began, reason)

    @property
    def backup_took_over(self) -> bool:
        return self.took_over_after_s is not None

    @property
    def primary_returned(self) -> bool:
        return self.returned_calls > 0


def summarise(primary: Carrier, backup: Carrier, fault_start: float, fault_seconds: float,
              changes: Sequence[Change]) -> FailoverSummary:
    """The summary; `changes` are the primary's circuit changes, oldest first."""
    placed = Counter([*primary.destinations, *backup.destinations])
    fault_end = fault_start + fault_seconds
    opened = [c.at - fault_start for c in changes if c.state == "open" and c.at >= fault_start]
    on_backup = [t - fault_start for t in backup.received_at if t >= fault_start]
    returned = sorted(t for t in primary.received_at if t > fault_end)
    return FailoverSummary(
        calls={primary.label: len(primary.received_at), backup.label: len(backup.received_at)},
        numbers=len(placed),
        dialed_twice={number: n for number, n in placed.items() if n > 1},
        throttled={primary.label: primary.throttled, backup.label: backup.throttled},
        fault_start=fault_start,
        fault_seconds=fault_seconds,
        opened_after_s=min(opened) if opened else None,
        took_over_after_s=min(on_backup) if on_backup else None,
        returned_after_s=returned[0] - fault_start if returned else None,
        returned_calls=len(returned),
        changes=tuple((c.state, c.at - fault_start, c.reason) for c in changes),
    )


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:+.1f} s"


def summary_lines(summary: FailoverSummary, primary: str, backup: str,
                  settings: Mapping[str, str]) -> list[str]:
    """The summary as printed; `settings` are the demo's own (name -> value) it says it ran with."""
    lines = ["calls placed: " + " · ".join(f"{label} {n}" for label, n in summary.calls.items())]
    lines.append(f"{primary} refused connections for {summary.fault_seconds:.1f} s; the times below are "
                 "seconds after it began")
    path = " → ".join(f"{state} {at:+.1f} s" + (f" ({reason})" if reason else "")
                      for state, at, reason in summary.changes)
    lines.append(f"{primary}'s circuit: {path or 'never changed'}")
    lines.append(f"breaker opened: {_seconds(summary.opened_after_s)}")
    lines.append(f"backup took over: {backup}'s first call at {_seconds(summary.took_over_after_s)}")
    if summary.primary_returned:
        lines.append(f"{primary} took new attempts again from {_seconds(summary.returned_after_s)} "
                     f"(it listened again at {summary.fault_seconds:+.1f} s): {summary.returned_calls} calls")
    else:
        lines.append(f"{primary} took no new attempts after it recovered (the campaign ended first)")
    twice = ", ".join(f"{number} ×{n}" for number, n in list(summary.dialed_twice.items())[:5])
    lines.append(f"dialed twice: {len(summary.dialed_twice)} of {summary.numbers} numbers placed across both "
                 f"carriers' ledgers" + (f" ({twice})" if twice else ""))
    lines.append(f"429s: {sum(summary.throttled.values())} ("
                 + ", ".join(f"{label} {n}" for label, n in summary.throttled.items()) + ")")
    lines.append("ran with " + ", ".join(f"{name}={value}" for name, value in settings.items()))
    return lines
