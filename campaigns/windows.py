"""Calling windows: may this destination be called now, in its own local time? (pure; no I/O)

A window is a local time-of-day range on given ISO weekdays, applied in the destination's time zone
(or the campaign's override). A window whose end is before its start spans midnight; equal ends mean all day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class CallingWindow:
    """The campaign's permitted local hours."""

    start: time
    end: time
    days: frozenset[int]  # ISO weekdays, 1 = Monday
    start_at: datetime | None = None  # campaign-wide bounds (absolute instants)
    end_at: datetime | None = None


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo:
    """The zone of that name; an unknown name is treated as UTC (the loader refuses unknown names)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _time_in(local: time, start: time, end: time) -> bool:
    if start == end:
        return True  # equal ends mean the whole day
    if start < end:
        return start <= local < end
    return local >= start or local < end  # spans midnight


def is_callable_now(window: CallingWindow, tz_name: str, now: datetime) -> bool:
    """True if `now` (aware) falls inside the window in the zone `tz_name` and inside the campaign bounds."""
    if window.start_at is not None and now < window.start_at:
        return False
    if window.end_at is not None and now >= window.end_at:
        return False
    local = now.astimezone(zone(tz_name))
    weekday = local.isoweekday()
    if window.start > window.end and local.time() < window.end:
        weekday = (local - timedelta(days=1)).isoweekday()  # the tail of yesterday's window
    return weekday in window.days and _time_in(local.time().replace(tzinfo=None), window.start, window.end)


def open_timezones(window: CallingWindow, timezones: Iterable[str], now: datetime) -> list[str]:
    """The zones among `timezones` whose local time is inside the window now."""
    return sorted(tz for tz in set(timezones) if is_callable_now(window, tz, now))


def next_opening(
    window: CallingWindow,
    tz_name: str,
    now: datetime,
    step: timedelta = timedelta(minutes=5),
    horizon: timedelta = timedelta(days=8),
) -> datetime | None:
    """The first instant after `now` (to `step` resolution) when the zone's window opens; None if never."""
    candidate = now
    limit = now + horizon
    while candidate < limit:
        candidate += step
        if is_callable_now(window, tz_name, candidate):
            return candidate
    return None


def window_of(
    start: time,
    end: time,
    days: Sequence[int],
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> CallingWindow:
    return CallingWindow(
        start=start, end=end, days=frozenset(int(d) for d in days), start_at=start_at, end_at=end_at
    )
