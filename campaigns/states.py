"""The destination and attempt state machines and the normalised call outcomes (pure; no I/O).

The single source of the engine's states: which moves are allowed, which states are final, who owns each
non-final state and by what deadline it leaves it (`DESTINATION_OWNERS`, `ATTEMPT_OWNERS`), and the SQL
status lists built from those sets (`sql_in`). Transitions only go forward: the engine's UPDATEs are
conditional on the expected current state (`allowed_sources(target)`), so a late `ringing` never overwrites
`done` and two actors can never both win.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
ACTIVE_DESTINATION = frozenset(set(D) - FINAL_DESTINATION)  # a campaign with any of these is not finished
LIVE_DESTINATION = frozenset({D.DIALING, D.RINGING, D.ANSWERED})  # a call may exist
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
    # Not dialed yet; or (dialing) an attempt not yet sent, undone by cancel; or a live call of a cancelled
    # campaign whose outcome would have retried: it never returns to retry_wait.
    D.CANCELLED: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT, D.DIALING, D.RINGING, D.ANSWERED, D.UNKNOWN}),
    D.EXPIRED: frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT}),
}


def allowed_sources(target: DestinationStatus) -> frozenset[DestinationStatus]:
    """The statuses a destination may move to `target` from."""
    return _DESTINATION_SOURCES.get(target, frozenset())


def can_move(current: DestinationStatus, target: DestinationStatus) -> bool:
    """May a destination move from `current` to `target`?"""
    return current in allowed_sources(target)


def destination_moves_from(current: DestinationStatus) -> frozenset[DestinationStatus]:
    """Every status a destination may move to from `current`."""
    return frozenset(target for target, sources in _DESTINATION_SOURCES.items() if current in sources)


def attempt_can_move(current: AttemptStatus, target: AttemptStatus) -> bool:
    """Forward only; UNKNOWN may still be resolved by a late final event into COMPLETED."""
    if current == A.UNKNOWN and target == A.COMPLETED:
        return True
    return ATTEMPT_RANK[target] > ATTEMPT_RANK[current]


def attempt_moves_from(current: AttemptStatus) -> frozenset[AttemptStatus]:
    """Every status an attempt may move to from `current`."""
    return frozenset(target for target in A if attempt_can_move(current, target))


# Status sets the engine's SQL selects on, named for the question they answer.
FINISHABLE_DESTINATION = allowed_sources(D.DONE)  # a final event may finish these (unknown: reaper gave up)
EXPIRABLE_DESTINATION = allowed_sources(D.EXPIRED)  # not yet dialed: the schedule's end expires them
DUE_DESTINATION = allowed_sources(D.QUEUED)  # waiting for an attempt, due at next_attempt_at
# The dispatcher also claims `queued` rows again once their claim lease has passed (the chunk task died).
CLAIMABLE_DESTINATION = DUE_DESTINATION | {D.QUEUED}


def sql_in(column: str, statuses: Iterable[StrEnum]) -> str:
    """`column IN ('a', 'b')` for a status set, in the enum's order: literals, not parameters, so the
    planner can match the partial indexes of schema.sql."""
    chosen = set(statuses)
    if not chosen:
        raise ValueError("sql_in: an empty status set matches nothing")
    order = {member: i for i, member in enumerate(type(next(iter(chosen))))}
    values = ", ".join(f"'{s.value}'" for s in sorted(chosen, key=order.__getitem__))
    return f"{column} IN ({values})"


def sql_values(statuses: Iterable[StrEnum]) -> list[str]:
    """A status set as a psycopg parameter for `= ANY(%s)`, in the enum's order."""
    chosen = set(statuses)
    return [s.value for s in type(next(iter(chosen))) if s in chosen] if chosen else []


@dataclass(frozen=True)
class Ownership:
    """Who moves a non-final state on, by what deadline, and where to: nothing waits for ever."""

    owner: str  # the component (module) that moves it on
    deadline: str  # what bounds the time spent in this state
    setting: str  # the constant or campaign field holding that deadline
    moves_to: frozenset[StrEnum]


APPLIER = "workers.callbacks (applier)"  # applies the carrier's callbacks
UNTIL_REAPED = "its lease; then the reaper reconciles it or marks it unknown"

DESTINATION_OWNERS: dict[DestinationStatus, Ownership] = {
    D.PENDING: Ownership("workers.dispatcher", "claimed when due; expired at the campaign's end",
                         "destination.next_attempt_at, campaign.end_at", destination_moves_from(D.PENDING)),
    D.RETRY_WAIT: Ownership("workers.dispatcher", "claimed at next_attempt_at; expired at the campaign's end",
                            "destination.next_attempt_at, campaign.end_at",
                            destination_moves_from(D.RETRY_WAIT)),
    D.QUEUED: Ownership("workers.dialing", "the chunk's claim lease; after it the dispatcher claims it again",
                        "workers.dial_store.QUEUED_LEASE_S", destination_moves_from(D.QUEUED)),
    D.DIALING: Ownership(APPLIER, "its attempt's lease; then the reaper",
                         "campaigns.call_options.dial_lease_s", destination_moves_from(D.DIALING)),
    D.RINGING: Ownership(APPLIER, "its attempt's lease; then the reaper",
                         "campaigns.call_options.dial_lease_s", destination_moves_from(D.RINGING)),
    D.ANSWERED: Ownership(APPLIER, "its attempt's lease (ring + talk); then the reaper",
                          "campaigns.call_options.dial_lease_s", destination_moves_from(D.ANSWERED)),
}

ATTEMPT_OWNERS: dict[AttemptStatus, Ownership] = {
    A.DIALING: Ownership("workers.dialing", "unsent: the reaper hands it back after a grace; sent: its lease",
                         "workers.reaper.NEVER_SENT_GRACE_S, campaigns.call_options.dial_lease_s",
                         attempt_moves_from(A.DIALING)),
    A.SENT: Ownership(APPLIER, UNTIL_REAPED,
                      "campaigns.call_options.dial_lease_s", attempt_moves_from(A.SENT)),
    A.RINGING: Ownership(APPLIER, UNTIL_REAPED,
                         "campaigns.call_options.dial_lease_s", attempt_moves_from(A.RINGING)),
    A.ANSWERED: Ownership(APPLIER, "its lease; the reaper extends a live call by the "
                          "answered lease, else reconciles or marks unknown",
                          "call_options.dial_lease_s, answered_lease_s", attempt_moves_from(A.ANSWERED)),
}


# Runs. A new run of a campaign (an operator's rerun, or a schedule firing) is the one way out of a final
# state: the destinations it takes start a fresh cycle, numbered by the run (destination.run_no, and every
# attempt carries it). It is not a move of the dialing machine, so `allowed_sources` does not list it and
# no engine UPDATE can take it by accident; campaigns.runs is its only caller.
RUN_RESET_TARGET = D.PENDING
RUN_RESETTABLE = frozenset({D.DONE, D.FAILED, D.UNKNOWN, D.EXPIRED})  # never dnc, invalid or cancelled
# What a run may choose to dial again: a final outcome, or `expired` (the previous run ended first).
RUN_SELECTABLE = frozenset({o.value for o in Outcome} | {D.EXPIRED.value})
# Campaign states a new run may begin from; `running` only once its previous run has been ended.
RUN_STARTABLE_CAMPAIGN = ("draft", "completed", "running")
