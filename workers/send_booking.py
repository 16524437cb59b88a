"""Booking a provider request's send time against the account's CPS budget, and waiting for it.

The limiter (workers.ratelimit) books a send time; this module waits for it, marks the attempts as sending
just before it, and books again when the thread woke too late (a late send would put two bookings closer
at the carrier than the budget allows). The rules are pure functions (`mark_lead_s`, `allowed_lateness_s`);
the clock and the sleep are parameters, so tests can check the rule without timing the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.metrics import SEND_LATENESS
from workers.ratelimit import Budgets, BulkTooLarge, Reservation

# Requests leave a few ms off their booked time and the carrier counts arrivals, so budgets are kept in a
# window 40 ms longer than a second: a send that reaches the carrier up to 40 ms off its booked time still
# never puts more than the CPS into any 1-second window the carrier sees. The cost is 4% of the budget.
# (Measured: with 30 ms, 200 CPS on a loaded 2-core machine saw 202 in one second.)
BUDGET_WINDOW_S = 1.04
MAX_RESERVATION_WAIT_S = 2.0  # longer than this and the work goes back to Postgres
LATE_TOLERANCE_S = 0.005  # woke later than this after the booked send time: book again
MARK_ALLOWANCE_S = 0.015  # plus this for the pre-send mark; 20 of the 40 ms guard remain for the request
# The mark starts this long before the booked time: late enough that a worker killed while waiting has
# marked nothing (its attempts go back to be dialed), early enough that a thousand-row bulk is marked in time.
MARK_LEAD_S = 0.01
MARK_LEAD_PER_ROW_S = 0.0001
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


def allowed_lateness_s(mark_overran: bool) -> float:
    """How late after the booked time a request may still leave. A send booked for now that waited for the
    mark's round trip is allowed that too; a stall longer than this re-books."""
    return LATE_TOLERANCE_S + (MARK_ALLOWANCE_S if mark_overran else 0.0)


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
    a thousand rows takes longer to mark than the guard allows after the booked time. False from
    `mark_sending` means none is left to send."""
    marked = False
    for _ in range(MAX_REBOOKINGS):
        try:
            grant = budgets.reserve(
                booking.account_id,
                booking.campaign_id,
                booking.n,
                booking.account_rate,
                booking.campaign_rate,
                MAX_RESERVATION_WAIT_S,
                BUDGET_WINDOW_S,
            )
        except BulkTooLarge:  # the adaptive rate fell since the chunk was sized: hand back, re-chunk
            return Reservation(False, 0.0, 0.1)
        if not grant.granted:
            return grant
        due = clock() + grant.send_at_delay_s
        mark_overran = False
        if not marked:
            lead = due - mark_lead_s(booking.n) - clock()
            if lead > 0:
                sleep(lead)
            if not mark_sending():
                budgets.refund(booking.account_id, booking.campaign_id, grant)
                return Reservation(False, 0.0, 0.0)
            marked = True
            # The next booking needs no mark, so it gets the usual tolerance only.
            mark_overran = clock() > due
        remaining = due - clock()
        if remaining > 0:
            sleep(remaining)
        late = clock() - due
        if late > allowed_lateness_s(mark_overran):
            budgets.refund(booking.account_id, booking.campaign_id, grant)
            continue
        SEND_LATENESS.observe(max(late, 0.0))  # the request leaves now
        return grant
    # Marked but never sent (this thread kept waking late): the caller undoes them, which is safe.
    return Reservation(False, 0.0, 0.05)
