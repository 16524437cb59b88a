"""What happens to a destination after an attempt's outcome: done, retry later, or failed (pure).

A campaign's `retry_policy` (jsonb) maps an outcome to {"delay_s": seconds, "max_attempts": n};
outcomes it does not name use DEFAULT_POLICY. `max_attempts` counts every attempt of the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from campaigns.states import DestinationStatus, Outcome

# answered/machine/cancelled/rejected finish at once; busy and no answer are tried again later.
DEFAULT_POLICY: dict[str, dict[str, int]] = {
    Outcome.ANSWERED: {"delay_s": 0, "max_attempts": 1},
    Outcome.MACHINE: {"delay_s": 0, "max_attempts": 1},
    Outcome.BUSY: {"delay_s": 300, "max_attempts": 3},
    Outcome.NO_ANSWER: {"delay_s": 1800, "max_attempts": 3},
    Outcome.FAILED: {"delay_s": 600, "max_attempts": 2},
    Outcome.REJECTED: {"delay_s": 0, "max_attempts": 1},
    Outcome.CANCELLED: {"delay_s": 0, "max_attempts": 1},
    # Unknown means the call may have happened: never redial blindly unless the operator asks for it.
    Outcome.UNKNOWN: {"delay_s": 0, "max_attempts": 1},
}

# Where a destination ends when its outcome is final.
FINAL_STATUS = {
    Outcome.ANSWERED: DestinationStatus.DONE,
    Outcome.MACHINE: DestinationStatus.DONE,
    Outcome.BUSY: DestinationStatus.DONE,
    Outcome.NO_ANSWER: DestinationStatus.DONE,
    Outcome.CANCELLED: DestinationStatus.DONE,
    Outcome.FAILED: DestinationStatus.FAILED,
    Outcome.REJECTED: DestinationStatus.FAILED,
    Outcome.UNKNOWN: DestinationStatus.UNKNOWN,
}

# Carrier 5xx / connect errors: nothing was placed. Each destination retries after its own full-jitter
# backoff, uniform(0, min(cap, base * 2**attempt_no)), a bounded number of times.
TRANSIENT_BACKOFF_BASE_S = 5.0
TRANSIENT_BACKOFF_CAP_S = 300.0
TRANSIENT_MAX_ATTEMPTS = 5
THROTTLED_RETRY_DELAY_S = 5  # a carrier-side limit hung the call up: try again soon, not the person's fault
THROTTLED_MAX_ATTEMPTS = 10


class InvalidPolicy(ValueError):
    """A retry policy that names an unknown outcome or a bad number."""


@dataclass(frozen=True)
class NextStep:
    status: DestinationStatus
    next_attempt_at: datetime | None
    outcome: Outcome


# A retry a year out, or a millionth attempt, is a typo; and a delay past datetime's range would fail the
# transition that schedules it.
POLICY_BOUNDS = {"delay_s": (0, 30 * 86400), "max_attempts": (1, 100)}


def validate_policy(policy: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The policy with defaults filled in; raises InvalidPolicy naming the bad key."""
    merged: dict[str, dict[str, int]] = {k: dict(v) for k, v in DEFAULT_POLICY.items()}
    for key, rule in policy.items():
        if key not in {o.value for o in Outcome}:
            raise InvalidPolicy(f"retry_policy: unknown outcome {key!r}")
        if not isinstance(rule, Mapping):
            raise InvalidPolicy(f"retry_policy.{key}: expected an object with delay_s and max_attempts")
        for field in ("delay_s", "max_attempts"):
            value = rule.get(field, merged[key][field])
            low, high = POLICY_BOUNDS[field]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidPolicy(f"retry_policy.{key}.{field}: expected a whole number from {low} to "
                                    f"{high}, got {value!r}")
            merged[key][field] = value
    return merged


def next_step(
    outcome: Outcome,
    attempts_made: int,
    policy: Mapping[str, Any],
    now: datetime,
    end_at: datetime | None = None,
) -> NextStep:
    """Decide the destination's next state after an attempt ended with `outcome`."""
    rule = validate_policy(policy)[outcome]
    retry_at = now + timedelta(seconds=rule["delay_s"])
    if attempts_made < rule["max_attempts"] and (end_at is None or retry_at < end_at):
        return NextStep(DestinationStatus.RETRY_WAIT, retry_at, outcome)
    return NextStep(FINAL_STATUS[outcome], None, outcome)


def after_transient_error(attempts_made: int, now: datetime, backoff_s: float) -> NextStep:
    """Nothing was placed (5xx/connect error): retry after backoff, a bounded number of times."""
    if attempts_made < TRANSIENT_MAX_ATTEMPTS:
        return NextStep(DestinationStatus.RETRY_WAIT, now + timedelta(seconds=backoff_s), Outcome.FAILED)
    return NextStep(DestinationStatus.FAILED, None, Outcome.FAILED)


def after_carrier_throttle(attempts_made: int, now: datetime) -> NextStep:
    """A carrier-side limit ended the call (Plivo 1020, Bandwidth account-limit): not the person's answer."""
    if attempts_made < THROTTLED_MAX_ATTEMPTS:
        return NextStep(
            DestinationStatus.RETRY_WAIT, now + timedelta(seconds=THROTTLED_RETRY_DELAY_S), Outcome.FAILED
        )
    return NextStep(DestinationStatus.FAILED, None, Outcome.FAILED)


def unless_cancelled(step: NextStep, campaign_cancelled: bool) -> NextStep:
    """A destination of a cancelled campaign never waits for a retry: where the policy says retry_wait, it
    ends cancelled (with the outcome its call had)."""
    if campaign_cancelled and step.status == DestinationStatus.RETRY_WAIT:
        return NextStep(DestinationStatus.CANCELLED, None, step.outcome)
    return step
