"""The Postgres-restart bench's arithmetic (bench.postgres_restart_bench): the longest stretch without a
call after the outage began, and when the rate was full again, on hand-made arrival times."""

from __future__ import annotations

from bench.postgres_restart_bench import full_rate_at, longest_gap


def test_longest_gap_counts_from_the_outage_start_to_the_first_call() -> None:
    # Calls every 0.1 s until 10.0; the outage starts at 10.05 and the next call is at 14.0.
    times = [i / 10 for i in range(101)] + [14.0, 14.1, 14.2]
    assert longest_gap(times, since=10.05) == (14.0 - 10.05, 14.0)


def test_longest_gap_between_calls_after_the_outage() -> None:
    assert longest_gap([10.0, 10.5, 13.5, 13.6], since=10.0) == (3.0, 13.5)


def test_no_call_after_the_outage_is_no_gap() -> None:
    assert longest_gap([1.0, 2.0], since=5.0) == (0.0, 5.0)


def test_full_rate_is_the_first_second_holding_nine_tenths_of_the_rate() -> None:
    rate = 10
    trickle = [20.0, 20.5, 21.0]  # 2 a second: not full
    bulk = [22.0 + i / 100 for i in range(9)]  # 9 within a second: 90% of 10
    assert full_rate_at(trickle + bulk, after=19.0, rate=rate) == 22.0


def test_full_rate_before_postgres_accepted_again_does_not_count() -> None:
    before = [5.0 + i / 100 for i in range(10)]
    after = [30.0 + i / 10 for i in range(10)]
    assert full_rate_at(before + after, after=10.0, rate=10) == 30.0
    assert full_rate_at(before, after=10.0, rate=10) is None
