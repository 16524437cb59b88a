"""Booking a send time against the real Redis limiter: the pre-send mark happens while waiting for the
booked time, and a mark that overruns a send booked for now re-books instead of sending late."""

from __future__ import annotations

import itertools
import time
from typing import Any

import redis

from workers.dialing import BUDGET_WINDOW_S, DialContext, _book_send_time
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


def _context(budgets: Budgets) -> DialContext:
    return DialContext(conn=None, client=None, budgets=budgets)  # type: ignore[arg-type]


def test_the_mark_runs_just_before_the_booked_time(redis_client: redis.Redis) -> None:
    account = next(_accounts)
    budgets = BookingSpy(redis_client)
    # A full window booked ahead: the next send waits about a second for its turn.
    assert budgets.reserve(account, None, 10, 10, None, 2.0, BUDGET_WINDOW_S).granted
    marks: list[float] = []

    def mark() -> bool:
        marks.append(time.monotonic())
        return True

    started = time.monotonic()
    grant = _book_send_time(_context(budgets), account, 99, 1, 10, None, mark)
    sent = time.monotonic()
    first_delay = budgets.granted[1].send_at_delay_s
    assert grant.granted and first_delay > 0.5
    assert len(marks) == 1, "marked once, whatever the re-bookings"
    # Not at the start of the wait (a worker killed while waiting must leave nothing marked), and not after
    # the booked time (the mark's round trip would make the send late).
    assert first_delay - 0.1 < marks[0] - started < first_delay, (marks[0] - started, first_delay)
    assert sent - started >= grant.send_at_delay_s - 0.01, "returned before the booked send time"


def test_a_mark_that_overruns_a_send_booked_for_now_books_again(redis_client: redis.Redis) -> None:
    account = next(_accounts)
    budgets = BookingSpy(redis_client)
    marks = 0

    def overrunning_mark() -> bool:  # a thousand-row bulk on a loaded database
        nonlocal marks
        marks += 1
        time.sleep(0.1)
        return True

    grant = _book_send_time(_context(budgets), account, 99, 5, 1000, None, overrunning_mark)
    assert grant.granted
    assert marks == 1, "the attempts stay marked across re-bookings"
    assert budgets.granted[0].token in budgets.refunded, "the overrun booking was given back"
    assert grant.token == budgets.granted[-1].token and grant.token not in budgets.refunded


def test_nothing_left_to_send_gives_the_booking_back(redis_client: redis.Redis) -> None:
    account = next(_accounts)
    budgets = BookingSpy(redis_client)
    grant = _book_send_time(_context(budgets), account, 99, 1, 10, None, lambda: False)
    assert not grant.granted
    assert [g.token for g in budgets.granted] == budgets.refunded
