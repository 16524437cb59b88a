"""The destination and attempt state machines and the normalised call outcomes (pure; no I/O).

Transitions only go forward: every UPDATE in the engine is conditional on one of `allowed_sources(target)`,
so a late `ringing` never overwrites `done` and two actors can never both win.
"""

from __future__ import annotations

from enum import StrEnum


class DestinationStatus(StrEnum):
    """Where one destination of a campaign stands."""

    PENDING = "pending"  # loaded, waiting for its first attempt
    QUEUED = "queued"  # claimed by the dispatcher, in a dial-chunk task
    DIALING = "dialing"  # an attempt row exists and its request is being sent / was accepted
    RINGING = "ringing"  # the carrier reported ringing
    ANSWERED = "answered"  # the carrier reported answer
    DONE = "done"  # finished with an outcome; no more attempts
    RETRY_WAIT = "retry_wait"  # waiting for next_attempt_at
    FAILED = "failed"  # the carrier refused it (400) or retries ran out on failures
    INVALID = "invalid"  # not a dialable number
    DNC = "dnc"  # on a do-not-call list at dial time
    CANCELLED = "cancelled"  # its campaign was cancelled
    EXPIRED = "expired"  # its campaign ended before it could be dialed
    UNKNOWN = "unknown"  # the result of its last attempt could not be learned


class AttemptStatus(StrEnum):
    """Where one call attempt stands."""

    DIALING = "dialing"  # row committed, request in flight (or the worker died: resolved by callback/lease)
    SENT = "sent"  # the carrier accepted it; ids recorded
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"  # final event applied
    FAILED = "failed"  # the carrier refused the request (no call exists)
    UNKNOWN = "unknown"  # lease passed with no final event and no answer from the carrier


class Outcome(StrEnum):
    """What happened to a call, the same words whatever the provider."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    REJECTED = "rejected"
    MACHINE = "machine"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


D = DestinationStatus
A = AttemptStatus

FINAL_DESTINATION = frozenset({D.DONE, D.FAILED, D.INVALID, D.DNC, D.CANCELLED, D.EXPIRED, D.UNKNOWN})
LIVE_DESTINATION = frozenset({D.DIALING, D.RINGING, D.ANSWERED})
FINAL_ATTEMPT = frozenset({A.COMPLETED, A.FAILED, A.UNKNOWN})
OPEN_ATTEMPT = frozenset({A.DIALING, A.SENT, A.RINGING, A.ANSWERED})

# Lifecycle rank of an attempt: an event may only move an attempt to a higher rank.
ATTEMPT_RANK = {
    A.DIALING: 0,
    A.SENT: 1,
    A.RINGING: 2,
    A.ANSWERED: 3,
    A.COMPLETED: 4,
    A.FAILED: 4,
    A.UNKNOWN: 4,
}

_DESTINATION_SOURCES: dict[DestinationStatus, frozenset[DestinationStatus]] = {
    D.QUEUED: frozenset({D.PENDING, D.RETRY_WAIT}),
    D.DIALING: frozenset({D.QUEUED}),
    D.RINGING: frozenset({D.DIALING}),
    D.ANSWERED: frozenset({D.DIALING, D.RINGING}),
    D.RETRY_WAIT: frozenset({D.DIALING, D.RINGING, D.ANSWERED, D.QUEUED, D.UNKNOWN}),
    D.PENDING: frozenset({D.QUEUED}),  # a claimed chunk handed back (pause, window closed, throttled)
    D.DONE: frozenset({D.DIALING, D.RINGING, D.ANSWERED, D.UNKNOWN}),
    D.FAILED: frozenset({D.QUEUED, D.DIALING, D.RINGING, D.ANSWERED, D.UNKNOWN}),
    D.UNKNOWN: frozenset({D.DIALING, D.RINGING, D.ANSWERED}),
    D.DNC: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT}),
    D.INVALID: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT}),
    D.CANCELLED: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT}),
    D.EXPIRED: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT}),
}


def allowed_sources(target: DestinationStatus) -> frozenset[DestinationStatus]:
    """The statuses a destination may move to `target` from."""
    return _DESTINATION_SOURCES.get(target, frozenset())


def can_move(current: DestinationStatus, target: DestinationStatus) -> bool:
    return current in allowed_sources(target)


def attempt_can_move(current: AttemptStatus, target: AttemptStatus) -> bool:
    """Forward only; UNKNOWN may still be resolved by a late final event into COMPLETED."""
    if current == A.UNKNOWN and target == A.COMPLETED:
        return True
    return ATTEMPT_RANK[target] > ATTEMPT_RANK[current]
