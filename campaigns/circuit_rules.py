"""An account's circuit breaker, as rules (pure): when it opens, how long it stays open, when it closes.

The states are campaigns.states.CircuitState; campaigns.circuits writes them. What a carrier's answer counts
as is decided here too, so the dial chunk, the tests and docs/DESIGN.md read one table:
- a refusal of the credentials or the account (401, 403, 404, a redirect) or of the balance (402) opens the
  circuit at once: every further request would get the same answer;
- a failure (a 5xx, a timeout, a refused or lost connection) counts in a sliding window, and the circuit
  opens when the window holds at least `min_failures` of them and they are at least `failure_ratio` of its
  requests: one 5xx in a healthy stream changes nothing, a carrier that is down opens within a fraction of
  a second at tens of CPS;
- a 429 (or a 503 with Retry-After, the carrier's limiter) is the budget's business, and a 400 says the
  carrier read the request: neither counts against its health.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from campaigns.config import Settings, get_settings


class Cause(StrEnum):
    """Why a circuit opened (the `account_circuit.cause` column)."""

    AUTH = "auth"  # the carrier refused the credentials or the account (401, 403, 404)
    PAYMENT = "payment"  # the carrier refused for balance (402)
    FAILURE_RATE = "failure_rate"  # too many 5xx, timeouts or refused connections in the window
    OPERATOR = "operator"  # `dialer account disable`: only `dialer account enable` closes it


class Verdict(StrEnum):
    """What one request's answer says of its account's health."""

    HEALTHY = "healthy"  # the carrier took the request (2xx), or refused it for a reason of its own (400)
    FAILED = "failed"  # counts in the failure window
    NEUTRAL = "neutral"  # a 429 or our own refusal: nothing about the carrier's health


@dataclass(frozen=True)
class CircuitPolicy:
    """The breaker's numbers (the DIALER_CIRCUIT_* settings, README's table)."""

    window_s: float = 10.0
    min_failures: int = 5
    failure_ratio: float = 0.5
    cooldown_s: float = 30.0
    auth_cooldown_s: float = 300.0
    cooldown_max_s: float = 600.0
    probes: int = 3
    probe_deadline_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> CircuitPolicy:
        s = settings or get_settings()
        return cls(window_s=s.circuit_window_s, min_failures=s.circuit_min_failures,
                   failure_ratio=s.circuit_failure_ratio, cooldown_s=s.circuit_cooldown_s,
                   auth_cooldown_s=s.circuit_auth_cooldown_s, cooldown_max_s=s.circuit_cooldown_max_s,
                   probes=s.circuit_probes, probe_deadline_s=s.circuit_probe_deadline_s)


def trips(failures: int, successes: int, policy: CircuitPolicy) -> bool:
    """Whether a window holding these counts opens the circuit."""
    total = failures + successes
    return failures >= policy.min_failures and total > 0 and failures >= policy.failure_ratio * total


def cooldown_base_s(cause: Cause, policy: CircuitPolicy) -> float:
    """The first cool-down of an opening for `cause` (each reopening doubles it, up to the cap)."""
    return policy.auth_cooldown_s if cause in (Cause.AUTH, Cause.PAYMENT) else policy.cooldown_s


def cooldown_s(cause: Cause, opened_in_a_row: int, policy: CircuitPolicy) -> float | None:
    """How long an opening for `cause` stays open before its probes, the `opened_in_a_row`-th since the
    circuit last closed (1 for the first): doubled each time, capped. None: until an operator enables it.
    (campaigns.circuits.open_circuit computes the same in its statement, from the row's own count.)"""
    if cause == Cause.OPERATOR:
        return None
    doubled = cooldown_base_s(cause, policy) * 2.0 ** max(0, opened_in_a_row - 1)
    return float(min(policy.cooldown_max_s, doubled))


def probes_left(probes_claimed: int, policy: CircuitPolicy) -> int:
    """Destinations a half-open account may still be sent."""
    return max(0, policy.probes - probes_claimed)


def closes_after(probes_passed: int, policy: CircuitPolicy) -> bool:
    """Whether this many passed probes close a half-open circuit."""
    return probes_passed >= policy.probes
