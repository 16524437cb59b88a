"""Durations as operators write them: a whole number and a unit, `30d`, `12h`, `90m`, `45s`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"\s*(\d{1,6})\s*([smhdw])\s*", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """`30d` -> 30 days; ValueError naming the accepted form for anything else (0 and no unit included)."""
    match = _DURATION.fullmatch(text or "")
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration: a whole number above 0 and a unit of "
                         "s, m, h, d or w (e.g. 30d, 12h)")
    return timedelta(**{UNITS[match.group(2).lower()]: int(match.group(1))})
