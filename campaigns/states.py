"""The destination and attempt state machines, the campaign's states and the normalised call outcomes
(pure; no I/O).

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


class CampaignState(StrEnum):
    """Where a campaign stands (the `campaign.state` column): the operator's controls, the loader, the
    dispatcher and the run scheduler move it, each by a conditional UPDATE on the state it expects."""

    LOADING = "loading"  # its CSV is being loaded; nothing of it is visible until the load commits
    DRAFT = "draft"  # loaded, never started
    RUNNING = "running"  # the dispatcher claims its due destinations
    PAUSED = "paused"  # no new call is placed (the operator paused it, or its account's credentials failed)
    COMPLETED = "completed"  # every destination is final or its end came; a new run may start it again
    CANCELLED = "cancelled"  # stopped for good; a clone is the way to dial its list again


class RunTrigger(StrEnum):
    """What began a run of a campaign (the `campaign_run.trigger` column). A run has no status of its own:
    it is open until `finished_at` is set."""

    START = "start"  # `campaign start` of a draft: run 1, the whole list
    SCHEDULE = "schedule"  # the campaign's schedule fired
    RERUN = "rerun"  # an operator asked for a new run (`dialer campaign rerun`, POST .../rerun)


class CircuitState(StrEnum):
    """An account's circuit breaker (the `account_circuit.state` column; no row is closed). The dial chunk's
    results open it; the dispatcher moves it open -> half-open at its cool-down and sends it probes; the
    probes' results close it or open it again; an operator opens it (`dialer account disable`) and closes it
    (`enable`). campaigns.circuits writes it."""

    CLOSED = "closed"  # takes attempts
    OPEN = "open"  # takes no new attempts until `retry_at` (never, when an operator disabled it)
    HALF_OPEN = "half_open"  # takes a few probe attempts; closes when they succeed


class Routing(StrEnum):
    """How a campaign with several accounts spreads its attempts (the `campaign.routing` column)."""

    FAILOVER = "failover"  # the first account in its order whose circuit is closed
    SPLIT = "split"  # every closed account, each as fast as its own budget allows


D = DestinationStatus
A = AttemptStatus
C = CampaignState

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


# Undoing an attempt that provably never reached the carrier (no row, or a row never marked as sending, or
# a request refused outright) takes its destination back. Not a forward move, so not in `allowed_sources`,
# whose lists guard the engine's ordinary UPDATEs: each undo is conditional on the very attempt it undoes.
_UNDO_TARGETS: dict[DestinationStatus, frozenset[DestinationStatus]] = {
    D.PENDING: frozenset({D.DIALING}),
    D.QUEUED: frozenset({D.DIALING}),
}


def slot_member(attempt_id: int) -> str:
    """A call attempt's member in the concurrency budgets (workers.ratelimit.slots): its id as a decimal
    string, `a.id::text` in SQL, so freeing one attempt's slot can never free another's."""
    return str(attempt_id)


def allowed_sources(target: DestinationStatus) -> frozenset[DestinationStatus]:
    """The statuses a destination may move forward to `target` from."""
    return _DESTINATION_SOURCES.get(target, frozenset())


def can_move(current: DestinationStatus, target: DestinationStatus) -> bool:
    """May a destination move from `current` to `target` (forward, or by undoing an unsent attempt)?"""
    return current in allowed_sources(target) or current in _UNDO_TARGETS.get(target, frozenset())


def destination_moves_from(current: DestinationStatus) -> frozenset[DestinationStatus]:
    """Every status a destination may move to from `current`."""
    return frozenset(target for target in D if can_move(current, target))


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
UNDIALED_DESTINATION = frozenset({D.PENDING, D.QUEUED, D.RETRY_WAIT})  # cancel takes these at once
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
REAPER = "workers.housekeeping.reaper"
DISPATCHER = "workers.dispatch.dispatcher"
BY_ITS_ATTEMPT = (
    "its attempt's deadline (below); if that attempt is final or missing, the reaper moves it on after a "
    "grace: by the retry policy, or back to pending when no attempt row exists"
)
ORPHAN_SETTING = "workers.housekeeping.reaper.ORPHAN_GRACE_S (60 s)"
AT_THE_LEASE = (
    "its lease; then the reaper asks the carrier's status API (where there is one and ids are known), "
    "else marks it unknown"
)
UNSENT_OR_UNANSWERED = (
    "never marked as sending: handed back after a grace (row deleted, destination pending). Marked but "
    "unanswered (worker died after sending, a 5xx, a lost answer): its evidence window after sent_at, then "
    "settled by evidence: sent if a callback or its ids (or another call of its bulk request) show the call, "
    "else unknown as never placed, the destination retried by the transient policy (or unknown if the "
    "campaign sets unsettled_send: unknown)"
)

DESTINATION_OWNERS: dict[DestinationStatus, Ownership] = {
    D.PENDING: Ownership(
        DISPATCHER, "claimed once due, in an open calling window; expired at the campaign's end",
        "destination.next_attempt_at, campaign window and end_at", destination_moves_from(D.PENDING)),
    D.RETRY_WAIT: Ownership(
        DISPATCHER, "claimed at next_attempt_at, in an open calling window; expired at the campaign's end",
        "next_attempt_at from the retry policy, campaign.end_at", destination_moves_from(D.RETRY_WAIT)),
    D.QUEUED: Ownership(
        f"workers.dialing.chunk (its chunk task); then {DISPATCHER}",
        "the chunk's claim lease; after it the dispatcher claims it again, counted as demand even when "
        "nothing else is due; expired at the campaign's end",
        "campaigns.store.dial_store.QUEUED_LEASE_S (30 s)", destination_moves_from(D.QUEUED)),
    D.DIALING: Ownership(f"its attempt's owner; {REAPER}", BY_ITS_ATTEMPT, ORPHAN_SETTING,
                         destination_moves_from(D.DIALING)),
    D.RINGING: Ownership(f"{APPLIER}; {REAPER}", BY_ITS_ATTEMPT, ORPHAN_SETTING,
                         destination_moves_from(D.RINGING)),
    D.ANSWERED: Ownership(f"{APPLIER}; {REAPER}", BY_ITS_ATTEMPT, ORPHAN_SETTING,
                          destination_moves_from(D.ANSWERED)),
}

ATTEMPT_OWNERS: dict[AttemptStatus, Ownership] = {
    A.DIALING: Ownership(
        f"workers.dialing.chunk; {APPLIER}; {REAPER}", UNSENT_OR_UNANSWERED,
        "workers.housekeeping.reaper.NEVER_SENT_GRACE_S (15 s); campaigns.call_options.evidence_window_s "
        "(ring timeout + evidence_margin_s, default 60 s)",
        attempt_moves_from(A.DIALING)),
    A.SENT: Ownership(f"{APPLIER}; {REAPER}", AT_THE_LEASE,
                      "campaigns.call_options.dial_lease_s (ring timeout + time limit + 60 s)",
                      attempt_moves_from(A.SENT)),
    A.RINGING: Ownership(f"{APPLIER}; {REAPER}", AT_THE_LEASE, "campaigns.call_options.dial_lease_s",
                         attempt_moves_from(A.RINGING)),
    A.ANSWERED: Ownership(
        f"{APPLIER}; {REAPER}",
        "its lease; a call the carrier says is still live gets the answered lease again, else it is "
        "reconciled or marked unknown",
        "campaigns.call_options.dial_lease_s, answered_lease_s (time limit + 60 s)",
        attempt_moves_from(A.ANSWERED)),
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
RUN_STARTABLE_CAMPAIGN = frozenset({C.DRAFT, C.COMPLETED, C.RUNNING})


def owner_table_markdown() -> str:
    """The owner tables as the Markdown that README.md and docs/DESIGN.md carry (tests/test_states.py checks
    they agree; `python -m campaigns.states` prints it)."""
    lines = ["| state | who moves it on | after how long (setting) | to what |", "|---|---|---|---|"]
    for kind, table in (("destination", DESTINATION_OWNERS), ("attempt", ATTEMPT_OWNERS)):
        for status, own in table.items():
            targets = ", ".join(t.value for t in type(status) if t in own.moves_to)
            lines.append(
                f"| {kind} `{status.value}` | {own.owner} | {own.deadline} ({own.setting}) | {targets} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(owner_table_markdown(), end="")
