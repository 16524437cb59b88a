"""Booking a provider request's send time against the account's CPS budget, waiting for it, and sending.

The limiter (workers.ratelimit) books a send time; this module waits until just before it, marks the
attempts as sending, and sends the request at the booked instant (`place_calls`, the dial's send point):
through this process's timed sender (workers.dialing.timed_sender), which refuses a send that would leave
too late, or, for a client without one, by sleeping until the booked time itself. A send that would leave
too late is booked again rather than sent late: arriving late it could share a sliding second at the
carrier with a send booked a window after it. The rules are pure functions (`guard_for`,
`allowed_lateness_s`, `mark_lead_s`, `handoff_lead_s`); the clock and the sleep are parameters, so tests
can check the rule without timing the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from workers.dialing.redis_clock import REDIS_CLOCK, RedisClock
from workers.dialing.timed_sender import SendSlot, SendTooLate, TimedClient
from workers.metrics.send_lateness import RECENT, RecentSeconds, observe_lateness, observe_refused_late
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials, CallsAccepted, OutboundCall
from workers.providers.http import send, sent_once
from workers.ratelimit import Budgets, BulkTooLarge, Reservation

# Requests leave a little off their booked time and the carrier counts arrivals (after the network), so each
# booked send is counted as an interval: from its booked time (it never leaves early) to its reach, the
# booked time plus the guard (cps.lua). The guard is NETWORK_S (how much more the network and the carrier's
# front end may delay one request than another) plus how late this send may still leave; later than that it
# is not sent but booked again. Once it has left, the sender tells Redis its real lateness
# (Budgets.note_left), and bookings from then on count it from when it really left: a late send costs the
# budget its own lateness, once, not a wider window for every send (the design before issue 18, which lost
# half the budget on a host a little busier than the one it was tuned on: bench/RESULTS.md).
# The allowed lateness follows this host (`guard_for`): GUARD_HEADROOM x the p99 of its recent send
# lateness, at least LATENESS_MIN_S, at most MAX_LATENESS_S. A wide guard costs budget only while its send
# is still waiting when a booking a second later is checked against it, which at tens of CPS and more it
# never is; so it can leave room for a busy host's tail and refuse almost nothing.
NETWORK_S = 0.02
LATENESS_MIN_S = 0.03
MAX_LATENESS_S = 0.2  # the latest any send leaves after its booked time
GUARD_HEADROOM = 3.0  # the guard leaves this many times the recent p99 lateness to the send
GUARD_MIN_S = NETWORK_S + LATENESS_MIN_S
GUARD_MAX_S = NETWORK_S + MAX_LATENESS_S
LATENESS_QUANTILE = 0.99
BUDGET_WINDOW_S = 1.0 + GUARD_MIN_S  # the window of a host that keeps time, until its sends report
MAX_WINDOW_S = 1.0 + GUARD_MAX_S
MAX_RESERVATION_WAIT_S = 2.0  # longer than this and the work goes back to Postgres
# But a send is booked no further ahead than this; until the account's next free time is this close, the
# thread waits. A booking is checked against the sends of the second before it, each counted to its whole
# guard while it has not left: one booked more than a second after a send that is still waiting pays that
# send's guard, and with many threads each holding a booking at tens of CPS the bookings ran 1.6 s ahead
# and the budget used fell from 97.6% to 95.3% (tests/test_lateness_replay.py at 20 CPS).
BOOKING_HORIZON_S = 0.8
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


def guard_for(recent_lateness_s: float, network_s: float = NETWORK_S) -> float:
    """How long after its booked time a send of this host may reach the carrier: the network allowance
    plus room for GUARD_HEADROOM times how late its sends recently left (at least LATENESS_MIN_S, so a host
    whose sends have all been on time can still be a little late; at most MAX_LATENESS_S)."""
    allowed = min(MAX_LATENESS_S, max(LATENESS_MIN_S, GUARD_HEADROOM * max(0.0, recent_lateness_s)))
    return network_s + allowed


def allowed_lateness_s(guard_s: float, network_s: float = NETWORK_S) -> float:
    """How late after its booked time a request booked with this guard may still leave; later than this,
    it is booked again."""
    return guard_s - network_s


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
        recent: RecentSeconds = RECENT,
        redis_clock: RedisClock | None = None,
    ) -> None:
        self.budgets, self.booking, self.mark_sending, self.timed = budgets, booking, mark_sending, timed
        self.sleep, self.clock, self.recent = sleep, clock, recent
        # The process's own bound on Redis's clock, unless a test's clock is not the process's.
        self.redis_clock = redis_clock or (REDIS_CLOCK if clock is time.monotonic else RedisClock())
        self.marked = False
        self.bookings = 0
        self.grant = Reservation(False, 0.0, 0.0)
        self.due = 0.0  # the granted send time on this process's clock (never before the booked instant)
        self.max_late_s = 0.0
        self.slack_s = 0.0  # how much earlier than `due` the booked instant may have been

    def _lead_s(self) -> float:
        """How far ahead the send must be booked for the work before it (the mark, the handover) to fit."""
        if self.timed:
            return handoff_lead_s(self.booking.n) if not self.marked else HANDOFF_LEAD_S
        return mark_lead_s(self.booking.n) if not self.marked else 0.0

    def _refund(self, grant: Reservation) -> None:
        self.budgets.refund(self.booking.account_id, self.booking.campaign_id, grant)

    def book(self) -> Reservation:
        """A granted reservation whose send is due at `self.due`, or a refusal (hand the work back); either
        is also `self.grant`."""
        self.grant = self._book()
        return self.grant

    def _reserve_within_horizon(self, guard: float) -> tuple[Reservation, float]:
        """A booking no further ahead than BOOKING_HORIZON_S, waiting here (at most until the send could be
        MAX_RESERVATION_WAIT_S away) while the account's next free time is further; (the answer, when it
        was asked on this process's clock)."""
        b, waited = self.booking, 0.0
        while True:
            asked = self.clock()
            grant = self.budgets.reserve(
                b.account_id, b.campaign_id, b.n, b.account_rate, b.campaign_rate,
                BOOKING_HORIZON_S, 1.0 + guard, self._lead_s(),
            )
            if grant.granted or waited + grant.retry_after_s > MAX_RESERVATION_WAIT_S - BOOKING_HORIZON_S:
                return grant, asked
            self.sleep(grant.retry_after_s)
            waited += grant.retry_after_s

    def _book(self) -> Reservation:
        b, clock = self.booking, self.clock
        while self.bookings < MAX_REBOOKINGS:
            self.bookings += 1
            guard = guard_for(self.recent.quantile(LATENESS_QUANTILE))
            try:
                grant, asked = self._reserve_within_horizon(guard)
            except BulkTooLarge:  # the adaptive rate fell since the chunk was sized: hand back, re-chunk
                return Reservation(False, 0.0, 0.1)
            if not grant.granted:
                return grant
            # The booked instant is on Redis's clock, read somewhere between asking and hearing back. The
            # send waits for the earliest local time it can be (never early); how unsure that is (the
            # bound's width, at most this round trip) counts against the allowed lateness: a host starved of
            # CPU hears back late, and its sends would otherwise leave late without knowing it.
            heard = clock()
            offset = self.redis_clock.observe(asked, grant.send_at - grant.send_at_delay_s, heard)
            due, slack = grant.send_at - offset.lo, offset.width
            max_late = allowed_lateness_s(guard)
            if slack > max_late:  # it could only leave later than allowed: book again (nothing marked)
                self._refund(grant)
                observe_refused_late(slack)
                continue
            if not self.marked:
                wait = due - (handoff_lead_s(b.n) if self.timed else mark_lead_s(b.n)) - clock()
                if wait > 0:
                    self.sleep(wait)
                if not self.mark_sending():
                    self._refund(grant)
                    return Reservation(False, 0.0, 0.0)
                self.marked = True
            elif self.timed and (wait := due - HANDOFF_LEAD_S - clock()) > 0:
                self.sleep(wait)
            if not self.timed and (remaining := due - clock()) > 0:
                self.sleep(remaining)
            lateness = clock() - due + slack
            if lateness > max_late:  # already too late to leave: book again
                self._refund(grant)
                observe_refused_late(lateness)  # counted in the recent lateness: the guard widens
                continue
            if not self.timed:
                observe_lateness(lateness)
            self.due, self.max_late_s, self.slack_s = due, max_late, slack
            return grant
        # Marked but never sent (this thread kept waking late): the caller undoes them, which is safe.
        return Reservation(False, 0.0, 0.05)

    def slot(self) -> SendSlot:
        """The granted send time as the timed sender takes it; when it leaves, its real lateness goes back to
        the limiter (`left`)."""
        return SendSlot(self.due, self.max_late_s, self.slack_s, on_left=self.left)

    def left(self, lateness_s: float) -> None:
        """The send left `lateness_s` after its booked time (an upper bound: the booking's round trip is in
        it): from now on the limiter counts it as reaching the carrier no later than that plus NETWORK_S."""
        b = self.booking
        capped = b.campaign_id if b.campaign_rate is not None else None
        self.budgets.note_left(b.account_id, capped, self.grant, lateness_s + NETWORK_S)

    def refused_late(self) -> Reservation:
        """The timed sender refused the send as too late: give the booking back and book again."""
        self._refund(self.grant)
        return self.book()


class NotRebooked(Exception):
    """The timed sender refused a late send and no new send time could be booked: hand the work back."""


def place_calls(
    booked: SendBooking,
    adapter: ProviderAdapter,
    client: httpx.Client,
    account: AccountCredentials,
    call: OutboundCall,
) -> CallsAccepted:
    """The dial's send point: the adapter builds the create request, it leaves at the booked time, and the
    adapter reads the carrier's answer. A send refused as too late is booked again (the attempts stay marked)
    and sent at its new time; NotRebooked when no new time could be booked."""
    while True:
        request = adapter.create_request(client, account, call)
        try:
            response = send_at_booked_instant(client, request, booked.slot(), account)
        except SendTooLate:
            if not booked.refused_late().granted:
                raise NotRebooked() from None
            continue
        return adapter.read_create_answer(response, account, call)


def send_at_booked_instant(
    client: httpx.Client, request: httpx.Request, slot: SendSlot, account: AccountCredentials
) -> httpx.Response:
    """Send a booked request once: through the dial client's timed sender, which writes it at the slot's
    instant or raises SendTooLate having sent nothing; on a plain client at once (its booking has already
    slept until the slot). A failure is the ProviderError workers.providers.http maps it to."""
    if not isinstance(client, TimedClient):
        return send(client, request, account)

    def at_slot(request: httpx.Request) -> httpx.Response:
        response = client.sender.send(request, slot)
        response.request = request  # what httpx.Client.send leaves on its answers
        client.cookies.extract_cookies(response)  # and, like it, a carrier's cookies go with the next request
        return response

    return sent_once(at_slot, request, account)


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
