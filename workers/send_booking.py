"""Booking a provider request's send time against the account's CPS budget, and waiting for it.

The limiter (workers.ratelimit) books a send time; this module waits until just before it, marks the
attempts as sending, and hands the request over to leave at the booked instant: to this process's timed
sender (workers.timed_sender), which refuses a send that would leave too late, or, for a client without
one, by sleeping until the booked time itself. A send that would leave too late is booked again rather than
sent late: arriving late it could share a sliding second at the carrier with a send booked a window after
it. The rules are pure functions (`mark_lead_s`, `handoff_lead_s`, `allowed_lateness_s`); the clock and the
sleep are parameters, so tests can check the rule without timing the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.ratelimit import Budgets, BulkTooLarge, Reservation
from workers.send_metrics import observe_lateness, observe_refused_late

# Requests leave a little off their booked time and the carrier counts arrivals (after the network), so
# budgets are kept in a window a little longer than a second: a send that reaches the carrier up to GUARD_S
# later than booked, relative to the send a window before it, still never puts more than the CPS into any
# 1-second window the carrier sees. The cost is GUARD_S / BUDGET_WINDOW_S of the budget (2%).
# Measured (bench/RESULTS.md, issue 13): with the timed sender, lateness p99 is about a millisecond, so
# 20 ms holds the allowed lateness (10 ms at most) and 10 ms of network jitter between two arrivals.
# Before the timed sender it was 40 ms, and still met 429s from a strict carrier.
GUARD_S = 0.02
BUDGET_WINDOW_S = 1.0 + GUARD_S
MAX_RESERVATION_WAIT_S = 2.0  # longer than this and the work goes back to Postgres
LATE_TOLERANCE_S = 0.005  # a send later than this after its booked time is booked again, not sent
MARK_ALLOWANCE_S = 0.005  # plus this when the pre-send mark itself ran past the booked time
# The mark starts this long before the booked time: late enough that a worker killed while waiting has
# marked nothing (its attempts go back to be dialed), early enough that a thousand-row bulk is marked in time.
MARK_LEAD_S = 0.01
MARK_LEAD_PER_ROW_S = 0.0001
# With a timed sender the chunk thread wakes this much earlier still, so that its own wake-up (decided by
# the GIL and the OS scheduler among dozens of threads) is not the send's.
HANDOFF_LEAD_S = 0.02
MAX_REBOOKINGS = 3


@dataclass(frozen=True)
class Booking:
    """What one request books: n tokens of the account's (and the campaign's) budget."""

    account_id: int
    campaign_id: int
    n: int
    account_rate: float
    campaign_rate: float | None


def mark_lead_s(n: int) -> float:
    """How long before the booked time the n attempts of a request start being marked as sending."""
    return MARK_LEAD_S + MARK_LEAD_PER_ROW_S * n


def handoff_lead_s(n: int) -> float:
    """With a timed sender: how long before the booked time the chunk thread wakes to mark the attempts
    and hand the request over."""
    return HANDOFF_LEAD_S + mark_lead_s(n)


def allowed_lateness_s(mark_overran: bool) -> float:
    """How late after the booked time a request may still leave. A send booked for now that waited for the
    mark's round trip is allowed that too; later than this, it is booked again."""
    return LATE_TOLERANCE_S + (MARK_ALLOWANCE_S if mark_overran else 0.0)


class SendBooking:
    """One request's send time: reserve the tokens, wait until just before the booked time, mark the
    attempts as sending (once, however often it is booked again), and hand over.

    `timed`: a timed sender makes the request leave at `due` and refuses it past `max_late_s`
    (`refused_late` then books again). Otherwise `book` itself sleeps until the booked time and books again
    when the thread woke too late. `mark_sending` returning False means none is left to send."""

    def __init__(
        self,
        budgets: Budgets,
        booking: Booking,
        mark_sending: Callable[[], bool],
        *,
        timed: bool,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budgets, self.booking, self.mark_sending, self.timed = budgets, booking, mark_sending, timed
        self.sleep, self.clock = sleep, clock
        self.marked = False
        self.bookings = 0
        self.grant = Reservation(False, 0.0, 0.0)
        self.due = 0.0  # the granted send time on this process's clock
        self.max_late_s = 0.0

    def _refund(self, grant: Reservation) -> None:
        self.budgets.refund(self.booking.account_id, self.booking.campaign_id, grant)

    def book(self) -> Reservation:
        """A granted reservation whose send is due at `self.due`, or a refusal (hand the work back); either
        is also `self.grant`."""
        self.grant = self._book()
        return self.grant

    def _book(self) -> Reservation:
        b, clock = self.booking, self.clock
        while self.bookings < MAX_REBOOKINGS:
            self.bookings += 1
            try:
                grant = self.budgets.reserve(
                    b.account_id, b.campaign_id, b.n, b.account_rate, b.campaign_rate,
                    MAX_RESERVATION_WAIT_S, BUDGET_WINDOW_S,
                )
            except BulkTooLarge:  # the adaptive rate fell since the chunk was sized: hand back, re-chunk
                return Reservation(False, 0.0, 0.1)
            if not grant.granted:
                return grant
            due = clock() + grant.send_at_delay_s
            mark_overran = False
            if not self.marked:
                wait = due - (handoff_lead_s(b.n) if self.timed else mark_lead_s(b.n)) - clock()
                if wait > 0:
                    self.sleep(wait)
                if not self.mark_sending():
                    self._refund(grant)
                    return Reservation(False, 0.0, 0.0)
                self.marked = True
                mark_overran = clock() > due  # a booking made after this needs no mark: usual tolerance
            elif self.timed and (wait := due - HANDOFF_LEAD_S - clock()) > 0:
                self.sleep(wait)
            max_late = allowed_lateness_s(mark_overran)
            if not self.timed and (remaining := due - clock()) > 0:
                self.sleep(remaining)
            lateness = clock() - due
            if lateness > max_late:  # already too late to leave: book again
                self._refund(grant)
                observe_refused_late(lateness)
                continue
            if not self.timed:
                observe_lateness(lateness)
            self.due, self.max_late_s = due, max_late
            return grant
        # Marked but never sent (this thread kept waking late): the caller undoes them, which is safe.
        return Reservation(False, 0.0, 0.05)

    def refused_late(self) -> Reservation:
        """The timed sender refused the send as too late: give the booking back and book again."""
        self._refund(self.grant)
        return self.book()


def book_send_time(
    budgets: Budgets,
    booking: Booking,
    mark_sending: Callable[[], bool],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Reservation:
    """Reserve the tokens and sleep until the booked send time; re-book if this thread woke too late.
    The attempts are marked as sending (`mark_sending`) just before the booked time, not after it: a bulk of
    a thousand rows takes longer to mark than the guard allows after the booked time."""
    return SendBooking(budgets, booking, mark_sending, timed=False, sleep=sleep, clock=clock).book()
