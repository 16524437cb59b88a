"""Blackout dates: the public holidays of each destination's own country (the `holidays` library) and the
campaign's own list of dates (pure).

A day is judged in the destination's time zone, and an overnight window belongs to the day it starts, as
in campaigns.windows. A destination on a blackout day waits for its next open window on a day that is not
one (`next_open`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import holidays
import phonenumbers

from campaigns.windows import CallingWindow, is_callable_now, next_opening, zone

MAX_DAYS_AHEAD = 400  # a destination blacked out longer than this waits for the campaign's end instead


@dataclass(frozen=True)
class Blackouts:
    """A campaign's blackout rules."""

    observe_holidays: bool = False
    dates: frozenset[date] = frozenset()

    @property
    def active(self) -> bool:
        return self.observe_holidays or bool(self.dates)


@lru_cache(maxsize=100_000)
def country_of(number: str) -> str | None:
    """ISO country of an E.164 number (None for SIP URIs and numbers of no single country)."""
    if not number.startswith("+"):
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number)) or None
    except phonenumbers.NumberParseException:
        return None


@lru_cache(maxsize=2048)
def _country_holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the library does not know: no public holidays to observe
        return frozenset()


def is_public_holiday(country: str | None, day: date) -> bool:
    return country is not None and day in _country_holidays(country, day.year)


def window_day(window: CallingWindow, tz_name: str, now: datetime) -> date:
    """The local day whose window `now` is in: the tail of an overnight window belongs to the day before."""
    local = now.astimezone(zone(tz_name))
    if window.start > window.end and local.time().replace(tzinfo=None) < window.end:
        return (local - timedelta(days=1)).date()
    return local.date()


def is_blacked_out(blackouts: Blackouts, country: str | None, day: date) -> bool:
    return day in blackouts.dates or (blackouts.observe_holidays and is_public_holiday(country, day))


def next_open(
    blackouts: Blackouts, window: CallingWindow, tz_name: str, country: str | None, now: datetime
) -> datetime | None:
    """The first instant from `now` when the window is open on a day that is not blacked out (None: not
    within MAX_DAYS_AHEAD, or the window never opens again)."""
    candidate = now if is_callable_now(window, tz_name, now) else next_opening(window, tz_name, now)
    for _ in range(MAX_DAYS_AHEAD):
        if candidate is None:
            return None
        day = window_day(window, tz_name, candidate)
        if not is_blacked_out(blackouts, country, day):
            return candidate
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone(tz_name))
        if window.start > window.end:  # the blacked-out day's overnight tail is still that day
            next_midnight = datetime.combine(day + timedelta(days=1), window.end, tzinfo=zone(tz_name))
        step = timedelta(minutes=5)  # next_opening looks from one step on: the next day's first instant
        candidate = next_opening(window, tz_name, next_midnight - step, step=step)
    return None


def open_for(blackouts: Blackouts, window: CallingWindow, tz_name: str, number: str, now: datetime) -> bool:
    """May this destination be called now: inside its window, on a day that is not a blackout for it?"""
    if not is_callable_now(window, tz_name, now):
        return False
    if not blackouts.active:
        return True
    country = country_of(number) if blackouts.observe_holidays else None
    return not is_blacked_out(blackouts, country, window_day(window, tz_name, now))


def blackouts_of(campaign_row: Mapping[str, Any]) -> Blackouts:
    """A campaign row's blackout settings."""
    return Blackouts(bool(campaign_row.get("observe_holidays")),
                     frozenset(campaign_row.get("blackout_dates") or ()))
