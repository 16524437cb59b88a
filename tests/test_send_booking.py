"""Booking a send time against the real Redis limiter: the pre-send mark happens just before the booked
time, and a send that would leave too late books again. The clock is a fake that moves only when the
booking sleeps (or the mark takes time), so these check the booking rule, not the machine's timing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from campaigns.accounts import AccountCredentials
from workers.dialing.redis_clock import RedisClock
from workers.dialing.send_booking import (
    BOOKING_HORIZON_S,
    BUDGET_WINDOW_S,
    GUARD_MAX_S,
    GUARD_MIN_S,
    LATENESS_QUANTILE,
    MAX_LATENESS_S,
    NETWORK_S,
    Booking,
    SendBooking,
    allowed_lateness_s,
    guard_for,
    handoff_lead_s,
    mark_lead_s,
    place_calls,
)
from workers.dialing.timed_sender import TimedSender, timed_client
from workers.metrics.send_lateness import RecentSeconds
from workers.providers.calls import CallbackUrls, OutboundCall
from workers.providers.registry import adapter_for
from workers.ratelimit import Budgets, Reservation

_accounts = itertools.count(7100)


class BookingSpy(Budgets):
    """The real limiter, remembering what it granted and what was refunded."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.granted: list[Reservation] = []
        self.refunded: list[str] = []

    def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
        grant = super().reserve(*args, **kwargs)
        if grant.granted:
            self.granted.append(grant)
        return grant

    def refund(self, account_id: int, campaign_id: int | None, reservation: Reservation) -> bool:
        self.refunded.append(reservation.token)
        return super().refund(account_id, campaign_id, reservation)


class FakeClock:
    """Monotonic seconds that pass only when someone sleeps or works."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def book_send_time(
    budgets: Budgets, booking: Booking, mark: Callable[[], bool], *, sleep: Callable[[float], None],
    clock: FakeClock, recent: RecentSeconds | None = None,
) -> Reservation:
    """A booking whose own thread sleeps until the booked time, on a host whose recent lateness is given."""
    return SendBooking(budgets, booking, mark, timed=False, sleep=sleep, clock=clock,
                       recent=recent or RecentSeconds()).book()


def _book(budgets: Budgets, clock: FakeClock, n: int, rate: float, mark: Callable[[], bool]) -> Reservation:
    booking = Booking(next(_accounts), 99, n, rate, None)
    return book_send_time(budgets, booking, mark, sleep=clock.sleep, clock=clock)


def test_the_mark_lead_grows_with_the_rows_to_mark() -> None:
    assert 0 < mark_lead_s(1) < mark_lead_s(1000)
    assert mark_lead_s(1000) == pytest.approx(0.11)


@pytest.mark.parametrize(
    ("recent_p99", "guard"),
    [
        (0.0, GUARD_MIN_S),  # a host that keeps time: the smallest guard
        (0.004, GUARD_MIN_S),
        (0.02, NETWORK_S + 0.06),  # a loaded one: room for 3 x its p99 lateness
        (1.0, GUARD_MAX_S),  # never more than this
    ],
)
def test_the_guard_follows_how_late_this_host_sends(recent_p99: float, guard: float) -> None:
    assert guard_for(recent_p99) == pytest.approx(guard)
    # The network keeps its part of any guard; the send gets the rest.
    assert allowed_lateness_s(guard_for(recent_p99)) == pytest.approx(guard - NETWORK_S)


def test_a_host_that_sends_late_books_with_a_wider_window(redis_client: redis.Redis) -> None:
    budgets = BookingSpy(redis_client)
    windows: list[float] = []
    reserve = budgets.reserve

    def spy(*args: Any) -> Reservation:
        windows.append(args[6])
        return reserve(*args)

    budgets.reserve = spy  # type: ignore[method-assign]
    late_host = RecentSeconds()
    for _ in range(100):
        late_host.add(0.015)
    clock = FakeClock()
    booked = SendBooking(budgets, Booking(next(_accounts), 99, 1, 10, None), lambda: True, timed=True,
                         sleep=clock.sleep, clock=clock, recent=late_host)
    assert booked.book().granted
    assert windows == [pytest.approx(1.0 + NETWORK_S + 0.045)]
    assert booked.max_late_s == pytest.approx(0.045)


def _after_a_full_window(
    redis_client: redis.Redis,
) -> tuple[BookingSpy, FakeClock, Booking, list[float], Callable[[], bool]]:
    """An account whose next half second is booked full, so the next send waits about half a second for its
    turn (within the booking horizon); and a mark that remembers when it ran."""
    budgets = BookingSpy(redis_client)
    clock = FakeClock()
    booking = Booking(next(_accounts), 99, 1, 10, None)
    assert budgets.reserve(booking.account_id, None, 5, 10, None, 2.0, BUDGET_WINDOW_S).granted
    marks: list[float] = []

    def mark() -> bool:
        marks.append(clock())
        return True

    return budgets, clock, booking, marks, mark


def test_the_mark_runs_just_before_the_booked_time(redis_client: redis.Redis) -> None:
    budgets, clock, booking, marks, mark = _after_a_full_window(redis_client)
    started = clock()
    grant = book_send_time(budgets, booking, mark, sleep=clock.sleep, clock=clock)
    delay = budgets.granted[1].send_at_delay_s
    assert grant.granted and grant.token == budgets.granted[1].token and delay > 0.45
    # Not at the start of the wait (a worker killed while waiting must leave nothing marked), and not after
    # the booked time (the mark's round trip would make the send late): exactly the lead before it.
    assert marks == [pytest.approx(started + delay - mark_lead_s(1))]
    assert clock() == pytest.approx(started + delay), "returned at the booked send time"
    assert budgets.refunded == []


def test_a_mark_within_the_allowed_lateness_sends_on_the_first_booking(redis_client: redis.Redis) -> None:
    budgets = BookingSpy(redis_client)
    clock = FakeClock()

    def quick_mark() -> bool:  # a send booked for now waits for the mark's round trip
        clock.now += allowed_lateness_s(GUARD_MIN_S)
        return True

    grant = _book(budgets, clock, 5, 1000, quick_mark)
    assert grant.granted and len(budgets.granted) == 1 and budgets.refunded == []


def test_a_mark_that_overruns_a_send_booked_for_now_books_again(redis_client: redis.Redis) -> None:
    budgets = BookingSpy(redis_client)
    clock = FakeClock()
    marks = 0

    def overrunning_mark() -> bool:  # a thousand-row bulk on a loaded database
        nonlocal marks
        marks += 1
        clock.now += 0.1
        return True

    grant = _book(budgets, clock, 5, 1000, overrunning_mark)
    assert grant.granted
    assert marks == 1, "the attempts stay marked across re-bookings"
    assert len(budgets.granted) == 2
    assert budgets.refunded == [budgets.granted[0].token], "the overrun booking was given back"
    assert grant.token == budgets.granted[-1].token


def test_a_thread_that_keeps_waking_late_hands_the_work_back(redis_client: redis.Redis) -> None:
    budgets = BookingSpy(redis_client)
    clock = FakeClock()

    def oversleep(seconds: float) -> None:
        clock.now += seconds + 2 * MAX_LATENESS_S

    booking = Booking(next(_accounts), 99, 1, 1000, None)
    # Sends booked about half a second ahead (within the booking horizon), so every booking sleeps (and
    # oversleeps).
    for _ in range(5):
        assert budgets.reserve(booking.account_id, None, 100, 1000, None, 2.0, BUDGET_WINDOW_S).granted
    grant = book_send_time(budgets, booking, lambda: True, sleep=oversleep, clock=clock)
    assert not grant.granted
    assert [g.token for g in budgets.granted[5:]] == budgets.refunded, "every late booking given back"
    assert len(budgets.refunded) == 3


def test_a_send_further_ahead_than_the_horizon_waits_for_it_then_books(redis_client: redis.Redis) -> None:
    """The account's next free time is 1.5 s away: the thread waits until it is within the booking horizon
    (no booking is made meanwhile), then books it, rather than booking 1.5 s ahead."""
    budgets = BookingSpy(redis_client)
    booking = Booking(next(_accounts), 99, 1, 10, None)
    assert budgets.reserve(booking.account_id, None, 10, 10, None, 2.0, BUDGET_WINDOW_S).granted
    assert budgets.reserve(booking.account_id, None, 5, 10, None, 2.0, BUDGET_WINDOW_S).granted
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    grant = SendBooking(budgets, booking, lambda: True, timed=True, sleep=sleep, recent=RecentSeconds(),
                        redis_clock=RedisClock())._reserve_within_horizon(0.05)[0]
    assert grant.granted and len(budgets.granted) == 3, "one booking, made once within the horizon"
    assert slept and sum(slept[:1]) == pytest.approx(1.5 - BOOKING_HORIZON_S, abs=0.1)
    assert grant.send_at_delay_s <= BOOKING_HORIZON_S


def test_nothing_left_to_send_gives_the_booking_back(redis_client: redis.Redis) -> None:
    budgets = BookingSpy(redis_client)
    grant = _book(budgets, FakeClock(), 1, 10, lambda: False)
    assert not grant.granted
    assert [g.token for g in budgets.granted] == budgets.refunded


def test_with_a_timed_sender_the_thread_hands_over_before_the_booked_time(redis_client: redis.Redis) -> None:
    budgets, clock, booking, marks, mark = _after_a_full_window(redis_client)
    started = clock()
    booked = SendBooking(budgets, booking, mark, timed=True, sleep=clock.sleep, clock=clock,
                         recent=RecentSeconds())
    grant = booked.book()
    delay = budgets.granted[1].send_at_delay_s
    assert grant.granted and booked.grant == grant and booked.due == pytest.approx(started + delay)
    # The sender waits for the booked instant; the thread, which may wake late, hands over ahead of it.
    assert marks == [pytest.approx(booked.due - handoff_lead_s(1))]
    assert clock() < booked.due
    assert booked.max_late_s == allowed_lateness_s(GUARD_MIN_S)


def test_a_send_the_timed_sender_refused_is_booked_again_and_not_marked_again(
    redis_client: redis.Redis,
) -> None:
    budgets = BookingSpy(redis_client)
    clock = FakeClock()
    marks = 0

    def mark() -> bool:
        nonlocal marks
        marks += 1
        return True

    booked = SendBooking(budgets, Booking(next(_accounts), 99, 1, 100, None), mark, timed=True,
                         sleep=clock.sleep, clock=clock, recent=RecentSeconds())
    first = booked.book()
    clock.now = booked.due + 0.5  # the sender found it half a second late and refused it
    again = booked.refused_late()
    assert again.granted and again.token != first.token
    assert budgets.refunded == [first.token], "the refused booking was given back"
    assert marks == 1
    assert booked.due >= clock() - booked.max_late_s


def test_the_window_of_a_host_that_keeps_time_is_the_smallest_guard() -> None:
    assert BUDGET_WINDOW_S == pytest.approx(1.0 + GUARD_MIN_S)
    assert allowed_lateness_s(GUARD_MIN_S) > 0


def test_a_late_start_stops_widening_the_window_once_it_is_older_than_the_span() -> None:
    """One slow second at a worker's start (100 ms late sends) widens its window at once, and no longer
    after the history's span: the lateness that counts is the host's recent one, not its first one."""
    clock = FakeClock()
    recent = RecentSeconds(span_s=10.0, clock=clock)
    for _ in range(5):
        recent.add(0.1)
    assert guard_for(recent.quantile(LATENESS_QUANTILE)) == pytest.approx(GUARD_MAX_S)
    clock.sleep(5.0)
    for _ in range(60):  # six seconds of a host keeping time again, 10 sends a second: 11 s in all
        recent.add(0.001)
        clock.sleep(0.1)
    assert guard_for(recent.quantile(LATENESS_QUANTILE)) == pytest.approx(GUARD_MIN_S)


def test_without_recent_sends_the_host_asks_for_the_narrowest_window() -> None:
    clock = FakeClock()
    recent = RecentSeconds(span_s=10.0, clock=clock)
    recent.add(0.04)
    clock.sleep(10.5)
    assert recent.quantile(LATENESS_QUANTILE) == 0.0
    assert guard_for(recent.quantile(LATENESS_QUANTILE)) == pytest.approx(GUARD_MIN_S)


class SlowReplies(BookingSpy):
    """The real limiter, whose answers reach this host `reply_s` after it asked (a host short of CPU): real
    time passes, on this host's clock and on Redis's alike."""

    def __init__(self, client: redis.Redis, reply_s: float) -> None:
        super().__init__(client)
        self.reply_s = reply_s

    def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
        grant = super().reserve(*args, **kwargs)
        time.sleep(self.reply_s)
        return grant


def real_time_booking(budgets: Budgets, redis_clock: RedisClock) -> SendBooking:
    return SendBooking(budgets, Booking(next(_accounts), 99, 1, 10, None), lambda: True, timed=True,
                       recent=RecentSeconds(), redis_clock=redis_clock)


def test_the_bookings_round_trip_counts_against_the_allowed_lateness(redis_client: redis.Redis) -> None:
    """The booked instant is on Redis's clock, read somewhere within the round trip: with nothing better
    known, a send timed from the reply may already be up to the round trip late. A slow reply (35 ms,
    against the 30 ms a host that keeps time may be late) is booked again rather than sent late without
    anyone knowing."""
    slow = SlowReplies(redis_client, reply_s=0.035)
    booked = real_time_booking(slow, RedisClock())
    assert not booked.book().granted
    assert slow.refunded == [g.token for g in slow.granted] and len(slow.granted) == 3


def test_a_quick_reply_leaves_the_rest_of_the_allowed_lateness_to_the_send(redis_client: redis.Redis) -> None:
    booked = real_time_booking(SlowReplies(redis_client, reply_s=0.004), RedisClock())
    assert booked.book().granted
    assert 0.004 <= booked.slack_s < 0.02
    assert booked.max_late_s == allowed_lateness_s(GUARD_MIN_S)


def test_a_slow_reply_after_quick_ones_is_only_as_unsure_as_they_were(redis_client: redis.Redis) -> None:
    """What quick round trips taught about Redis's clock still holds when a reply is slow: its send is
    timed from that, not from its own 35 ms of doubt."""
    learned = RedisClock()
    for _ in range(3):
        assert real_time_booking(BookingSpy(redis_client), learned).book().granted
    booked = real_time_booking(SlowReplies(redis_client, reply_s=0.035), learned)
    assert booked.book().granted
    assert booked.slack_s < 0.01


def test_the_send_point_books_a_refused_send_again_and_the_adapter_reads_the_answer(
    redis_client: redis.Redis,
) -> None:
    """place_calls: the adapter's request goes to the timed sender with the booking's slot; refused as too
    late, it is booked again and sent once at its new time, and the adapter reads the carrier's answer."""
    arrivals: list[float] = []

    def carrier(request: httpx.Request) -> httpx.Response:
        arrivals.append(time.monotonic())
        return httpx.Response(201, json={"request_uuid": "r-1", "call_uuid": "c-1"})

    budgets = BookingSpy(redis_client)
    booked = SendBooking(budgets, Booking(next(_accounts), 99, 1, 100, None), lambda: True, timed=True,
                         recent=RecentSeconds())
    first = booked.book()
    assert first.granted
    booked.due -= 1.0  # the request reached the sender a second after its booked time
    account = AccountCredentials(3, "tryvox", "acc3", "tvx_sk_test_1", "https://api.tryvox.test")
    call = OutboundCall(caller_id="+14155550100", destinations=["+12125550100"],
                        callbacks=CallbackUrls(answer_url="https://cb.test/a", hangup_url="https://cb.test/h"))
    sender = TimedSender(httpx.MockTransport(carrier))
    try:
        with timed_client(sender) as client:
            accepted = place_calls(booked, adapter_for("tryvox"), client, account, call)
    finally:
        sender.close()
    assert accepted.request_uuids == ["r-1"] and accepted.calls[0].call_uuid == "c-1"
    assert budgets.refunded == [first.token], "the refused booking was given back, the new one kept"
    assert len(arrivals) == 1 and arrivals[0] >= booked.due
