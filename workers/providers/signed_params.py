"""Plivo V3's POST string joins sorted keys and values with no separator (`CallUUIDcall-a-1Duration30`), so
one signature fits every body that concatenates to the same text: `CallUUID=call-a-1, Duration=30` and
`CallUUID=call-a-1Duration30` are two events under one signature. The scheme is Plivo's; what we can do is
accept a body only when it is the one reading of its text.

A reading splits the text into (key, value) pairs with the keys in strictly increasing order (how the
string is built; a repeated key is refused outright) and no value containing a parameter name. The names
are the parameters Plivo documents for its callbacks (Plivo's Make a call page, ring_url, answer_url,
hangup_url parameters; `Digits` for GetDigits; the fields we read) and the body's own keys. A body is accepted
when it is a reading and the text has no other: folding `Duration30` into the call uuid leaves a value holding
`Duration` (not a reading), and a body that could be read two ways is refused whichever way it was sent. A
carrier's own body fails only if one of its values holds a parameter name; it is then refused (403, counted)
and its call is settled by the reaper's status lookup, not guessed. Pure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from functools import cache

# Every parameter Plivo's callback pages name (page, ring_url, answer_url, hangup_url parameters), the hang-up
# fields we read, and GetDigits'.
PLIVO_CALLBACK_FIELDS = frozenset({
    "From", "To", "RequestUUID", "ALegRequestUUID", "CallUUID", "ALegUUID", "Direction", "Event",
    "CallStatus", "SessionStart", "STIRAttestation", "STIRVerification", "stir_verification", "StartTime",
    "AnswerTime", "EndTime", "Machine", "HangupCause", "HangupCauseCode", "HangupCauseName",
    "HangupSource", "Duration", "BillDuration", "TotalCost", "BillRate", "ParentAuthID", "CallerName",
    "Digits",
})
_MAX_READINGS = 2  # counting stops here: one reading is all that matters
MAX_PARAMS = 100  # a callback carries about 20; the count recurses once per key


def _occurrences(text: str, names: Iterable[str]) -> list[tuple[int, str]]:
    found = []
    for name in names:
        start = text.find(name)
        while start != -1:
            found.append((start, name))
            start = text.find(name, start + 1)
    return sorted(found)


def _readings(text: str, names: frozenset[str]) -> int:
    """How many readings `text` has (at most _MAX_READINGS)."""
    occurrences = _occurrences(text, names)
    positions = [p for p, _ in occurrences]
    # first_end[i]: the earliest end of a name starting at or after occurrences[i]; a value may not reach it
    first_end = [len(text) + 1] * (len(occurrences) + 1)
    for i in range(len(occurrences) - 1, -1, -1):
        first_end[i] = min(first_end[i + 1], occurrences[i][0] + len(occurrences[i][1]))
    starts = sorted(set(positions))
    names_at: dict[int, list[str]] = {}
    for position, name in occurrences:
        names_at.setdefault(position, []).append(name)

    @cache
    def count(position: int, previous: str) -> int:
        if position == len(text):
            return 1
        total = 0
        for name in names_at.get(position, ()):
            if name <= previous:
                continue
            value_start = position + len(name)
            limit = first_end[bisect_left(positions, value_start)]  # the value must end before this
            for end in [*starts[bisect_left(starts, value_start):], len(text)]:
                if end >= limit:
                    break
                total += count(end, name)
                if total >= _MAX_READINGS:
                    return total
        return total

    return count(0, "")


def one_reading(params: Mapping[str, Sequence[str]], known: frozenset[str] = PLIVO_CALLBACK_FIELDS) -> bool:
    """True when this form body is the only way to read the concatenation Plivo V3 signs."""
    if len(params) > MAX_PARAMS or any(len(values) != 1 for values in params.values()):
        return False
    names = known | frozenset(params)
    if any(name in values[0] for values in params.values() for name in names):
        return False
    text = "".join(f"{key}{params[key][0]}" for key in sorted(params))
    return _readings(text, names) == 1
