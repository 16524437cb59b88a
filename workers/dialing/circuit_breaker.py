"""The dial chunk's side of its account's circuit breaker: what each request's answer says of the account's
health (campaigns.circuit_rules.Verdict), and the moves that follow (campaigns.circuits).

- closed: a refusal of the credentials or the balance opens the circuit at once; a failure is added to the
  account's window in Redis (workers.ratelimit.health) and opens it when the window trips; successes are
  added once a second;
- half-open: this chunk carries probes; a success counts towards closing it, any failure opens it again
  (with a longer cool-down).
Whenever the account opens, the chunk stops and hands the rest of its destinations back due now, so the
dispatcher routes them to the campaign's next account within a tick.
"""

from __future__ import annotations

import logging
import weakref

import psycopg
import redis

from campaigns import circuits
from campaigns.circuit_rules import Cause, CircuitPolicy, Verdict, trips
from campaigns.states import CircuitState
from workers.providers.errors import (
    Ambiguous,
    AuthFailed,
    PaymentRequired,
    ProviderError,
    Rejected,
    Throttled,
    Transient,
)
from workers.ratelimit.health import HealthWindow

log = logging.getLogger(__name__)

_windows: weakref.WeakKeyDictionary[redis.Redis, HealthWindow] = weakref.WeakKeyDictionary()


def health_window(client: redis.Redis) -> HealthWindow:
    """The process's window writer for this Redis client (its unwritten successes are per process)."""
    window = _windows.get(client)
    if window is None:
        window = _windows[client] = HealthWindow(client)
    return window


def verdict_of(error: BaseException | None) -> tuple[Verdict, Cause | None]:
    """What a request's answer (None: accepted) says of its account's health, and what would open it."""
    if error is None:
        return Verdict.HEALTHY, None
    if isinstance(error, PaymentRequired):
        return Verdict.FAILED, Cause.PAYMENT
    if isinstance(error, AuthFailed):
        return Verdict.FAILED, Cause.AUTH
    if isinstance(error, Transient) and error.retry_after:
        # A 503 with Retry-After is the carrier's own limiter saying when to come back: a budget, like a 429.
        return Verdict.NEUTRAL, None
    if isinstance(error, Transient | Ambiguous):
        return Verdict.FAILED, Cause.FAILURE_RATE
    if isinstance(error, Throttled):
        return Verdict.NEUTRAL, None  # the budget's business, not the carrier's health
    if isinstance(error, Rejected):
        # The carrier read the request and refused this destination or body: it is up. Our own guard's
        # refusal (Refused) never reached it and says nothing, but counting it healthy harms nothing.
        return Verdict.HEALTHY, None
    return Verdict.NEUTRAL, None


class AccountBreaker:
    """One chunk's view of its account's breaker."""

    def __init__(self, conn: psycopg.Connection, client: redis.Redis, account_id: int, provider: str,
                 state: str, policy: CircuitPolicy | None = None) -> None:
        self.conn = conn
        self.window = health_window(client)
        self.account_id = account_id
        self.provider = provider
        self.state = CircuitState(state)
        self.started_half_open = self.state == CircuitState.HALF_OPEN
        self.policy = policy or CircuitPolicy.from_settings()

    @property
    def probing(self) -> bool:
        """This chunk carries probes of a half-open account (read when the chunk began)."""
        return self.started_half_open

    @property
    def usable(self) -> bool:
        return self.state != CircuitState.OPEN

    def note(self, error: BaseException | None, requests: int = 1) -> bool:
        """Record one request's answer, for the `requests` destinations it carried (a bulk counts each).
        Returns False when the account must take no more of this chunk's destinations."""
        verdict, cause = verdict_of(error)
        if verdict == Verdict.NEUTRAL:
            if self.state == CircuitState.HALF_OPEN:
                circuits.probe_inconclusive(self.conn, self.account_id, requests)
            return self.usable
        if verdict == Verdict.HEALTHY:
            self._healthy(requests)
            return self.usable
        assert cause is not None
        message = error.message if isinstance(error, ProviderError) else str(error)
        if self.state == CircuitState.HALF_OPEN:
            self._open(cause, f"probe failed: {message}")
        elif cause in (Cause.AUTH, Cause.PAYMENT):
            self._open(cause, message)
        else:
            # Counted per destination, as successes are: a refused bulk of 10 is 10 dials that failed.
            counts = self.window.add_failure(self.account_id, self.policy.window_s, requests)
            if trips(counts.recent_failures, counts.recent_successes, self.policy):
                total = counts.recent_failures + counts.recent_successes
                self._open(cause, f"{counts.recent_failures} of the last {total} dials failed; "
                                  f"last: {message}")
            elif trips(counts.failures, counts.successes, self.policy):
                total = counts.failures + counts.successes
                self._open(cause, f"{counts.failures} of {total} dials failed in "
                                  f"{self.policy.window_s:g} s; last: {message}")
        return self.usable

    def given_back(self, requests: int) -> None:
        """Destinations of this chunk given back before any answer (no send time could be kept): as probes of
        a half-open account they are not spent."""
        if self.state == CircuitState.HALF_OPEN:
            circuits.probe_inconclusive(self.conn, self.account_id, requests)

    def _healthy(self, requests: int) -> None:
        if self.state == CircuitState.HALF_OPEN:
            if circuits.probe_passed(self.conn, self.account_id, requests, self.policy):
                self.window.forget(self.account_id)
                self.state = CircuitState.CLOSED
                log.warning("account %s (%s): probes passed, its circuit is closed: it takes attempts again",
                            self.account_id, self.provider)
            return
        self.window.add_success(self.account_id, self.policy.window_s, requests)

    def _open(self, cause: Cause, reason: str) -> None:
        reason = f"{self.provider}: {reason}"
        if circuits.open_circuit(self.conn, self.account_id, cause, reason, self.policy):
            log.warning("account %s: circuit open (%s): %s", self.account_id, cause.value, reason)
        self.window.forget(self.account_id)
        self.state = CircuitState.OPEN
