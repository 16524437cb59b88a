"""Which attempt each id of an accepted provider request belongs to (pure).

A single request's ids are its attempt's. A bulk answer may list per-destination ids (matched by number,
with or without the leading +), only request ids (Plivo/Vobiz: per-destination ids arrive in callbacks), or
destinations it would not place (refused: no call will come of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.store.dial_store import StartedAttempt
from workers.providers.calls import CallsAccepted

# (attempt id, request_uuid, call_uuid), as campaigns.store.attempt_marks.record_sent takes them
SentIds = tuple[int, str | None, str | None]


@dataclass(frozen=True)
class AcceptedMatch:
    refused: list[StartedAttempt]  # the carrier would not place these
    sent: list[SentIds]  # every other attempt, with whatever ids the answer gave it

    def provider_ids(self, accepted: CallsAccepted) -> list[str]:
        """Every id a callback may carry for these calls (to apply any that arrived before them)."""
        return [i for row in self.sent for i in row[1:] if i] + list(accepted.request_uuids)


def match_accepted(started: list[StartedAttempt], accepted: CallsAccepted) -> AcceptedMatch:
    """Pair the answer's ids with the attempts sent in one request."""
    by_number = {a.destination.number.lstrip("+"): a for a in started}
    refused = [by_number[n.lstrip("+")] for n in accepted.refused if n.lstrip("+") in by_number]
    if refused:
        started = [a for a in started if a not in refused]
    rows: list[SentIds] = []
    matched: set[int] = set()
    for placed in accepted.calls:
        attempt = by_number.get((placed.to or "").lstrip("+")) if placed.to else None
        if attempt is None and len(started) == 1:
            attempt = started[0]
        if attempt is not None and attempt.attempt_id not in matched:
            matched.add(attempt.attempt_id)
            rows.append((attempt.attempt_id, placed.request_uuid, placed.call_uuid))
    for attempt in started:  # bulk: ids only in callbacks; mark sent
        if attempt.attempt_id not in matched:
            only = accepted.request_uuids[0] if len(started) == 1 and accepted.request_uuids else None
            rows.append((attempt.attempt_id, only, None))
    return AcceptedMatch(refused, rows)
