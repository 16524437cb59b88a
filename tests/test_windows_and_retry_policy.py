"""Pure rules: calling windows in the destination's local time, and the retry policy per outcome."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from campaigns.retry_policy import InvalidPolicy, next_step, validate_policy
from campaigns.states import DestinationStatus, Outcome
from campaigns.windows import is_callable_now, next_opening, open_timezones, window_of

NINE_TO_NINE = window_of(time(9), time(21), [1, 2, 3, 4, 5, 6, 7])
WEEKDAYS = window_of(time(9), time(17), [1, 2, 3, 4, 5])
OVERNIGHT = window_of(time(22), time(2), [1, 2, 3, 4, 5, 6, 7])
ALL_DAY = window_of(time(0), time(0), [1, 2, 3, 4, 5, 6, 7])
FRI_SAT_NIGHTS = window_of(time(22), time(2), [5, 6])  # a night belongs to the day it starts on


@pytest.mark.parametrize(
    ("window", "tz", "utc_now", "expected"),
    [
        (NINE_TO_NINE, "America/New_York", datetime(2026, 11, 23, 14, 0, tzinfo=UTC), True),  # 09:00 local
        (NINE_TO_NINE, "America/New_York", datetime(2026, 11, 23, 13, 59, tzinfo=UTC), False),  # 08:59 local
        (NINE_TO_NINE, "America/New_York", datetime(2026, 11, 24, 2, 0, tzinfo=UTC), False),  # 21:00 local
        (NINE_TO_NINE, "Asia/Kolkata", datetime(2026, 11, 23, 3, 30, tzinfo=UTC), True),  # 09:00 IST
        (NINE_TO_NINE, "Asia/Kolkata", datetime(2026, 11, 23, 16, 0, tzinfo=UTC), False),  # 21:30 IST
        (WEEKDAYS, "Europe/London", datetime(2026, 11, 22, 12, 0, tzinfo=UTC), False),  # Sunday
        (WEEKDAYS, "Europe/London", datetime(2026, 11, 23, 12, 0, tzinfo=UTC), True),  # Monday
        (OVERNIGHT, "UTC", datetime(2026, 11, 23, 23, 0, tzinfo=UTC), True),
        (OVERNIGHT, "UTC", datetime(2026, 11, 23, 1, 0, tzinfo=UTC), True),
        (OVERNIGHT, "UTC", datetime(2026, 11, 23, 3, 0, tzinfo=UTC), False),
        (ALL_DAY, "UTC", datetime(2026, 11, 23, 3, 0, tzinfo=UTC), True),
        (ALL_DAY, "Asia/Tokyo", datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC), True),
        # Overnight on restricted days (2026-11-27 is a Friday): after midnight is the night before's.
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 27, 23, 0, tzinfo=UTC), True),  # Friday night
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 28, 1, 0, tzinfo=UTC), True),  # Saturday 01:00: Friday's
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 29, 1, 0, tzinfo=UTC), True),  # Sunday 01:00: Saturday's
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 29, 23, 0, tzinfo=UTC), False),  # Sunday night
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 30, 1, 0, tzinfo=UTC), False),  # Monday 01:00: Sunday's
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 27, 1, 0, tzinfo=UTC), False),  # Friday 01:00: Thursday's
        (FRI_SAT_NIGHTS, "UTC", datetime(2026, 11, 28, 2, 0, tzinfo=UTC), False),  # the end is exclusive
        # New York springs forward on Sunday 2026-03-08 at 02:00 EST (07:00 UTC) to 03:00 EDT.
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 7, 14, 0, tzinfo=UTC), True),  # 09:00 EST
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 7, 13, 59, tzinfo=UTC), False),  # 08:59 EST
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 8, 13, 0, tzinfo=UTC), True),  # 09:00 EDT
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 8, 12, 59, tzinfo=UTC), False),  # 08:59 EDT
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 9, 0, 59, tzinfo=UTC), True),  # 20:59 EDT
        (NINE_TO_NINE, "America/New_York", datetime(2026, 3, 9, 1, 0, tzinfo=UTC), False),  # 21:00 EDT
        (FRI_SAT_NIGHTS, "America/New_York", datetime(2026, 3, 8, 6, 30, tzinfo=UTC), True),  # 01:30 EST
        (FRI_SAT_NIGHTS, "America/New_York", datetime(2026, 3, 8, 7, 0, tzinfo=UTC), False),  # 03:00 EDT
        # London falls back on Sunday 2026-10-25 at 02:00 BST (01:00 UTC) to 01:00 GMT.
        (WEEKDAYS, "Europe/London", datetime(2026, 10, 23, 8, 0, tzinfo=UTC), True),  # Friday 09:00 BST
        (WEEKDAYS, "Europe/London", datetime(2026, 10, 23, 7, 59, tzinfo=UTC), False),  # Friday 08:59 BST
        (WEEKDAYS, "Europe/London", datetime(2026, 10, 26, 9, 0, tzinfo=UTC), True),  # Monday 09:00 GMT
        (WEEKDAYS, "Europe/London", datetime(2026, 10, 26, 8, 59, tzinfo=UTC), False),  # Monday 08:59 GMT
        (FRI_SAT_NIGHTS, "Europe/London", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),  # 01:30 BST
        (FRI_SAT_NIGHTS, "Europe/London", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),  # 01:30 GMT
        (FRI_SAT_NIGHTS, "Europe/London", datetime(2026, 10, 25, 2, 0, tzinfo=UTC), False),  # 02:00 GMT
        (FRI_SAT_NIGHTS, "Europe/London", datetime(2026, 10, 25, 22, 0, tzinfo=UTC), False),  # Sunday night
    ],
)
def test_window_is_judged_in_the_destinations_local_time(window, tz, utc_now, expected) -> None:
    assert is_callable_now(window, tz, utc_now) is expected


def test_campaign_bounds_close_the_window() -> None:
    bounded = window_of(
        time(0),
        time(23, 59),
        [1, 2, 3, 4, 5, 6, 7],
        start_at=datetime(2026, 11, 23, tzinfo=UTC),
        end_at=datetime(2026, 11, 24, tzinfo=UTC),
    )
    assert not is_callable_now(bounded, "UTC", datetime(2026, 11, 22, 12, tzinfo=UTC))
    assert is_callable_now(bounded, "UTC", datetime(2026, 11, 23, 12, tzinfo=UTC))
    assert not is_callable_now(bounded, "UTC", datetime(2026, 11, 24, 12, tzinfo=UTC))


def test_open_timezones_lists_only_zones_inside_their_window() -> None:
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 New York, 20:30 Kolkata, 00:00 Tokyo
    assert open_timezones(NINE_TO_NINE, ["America/New_York", "Asia/Kolkata", "Asia/Tokyo"], now) == [
        "America/New_York",
        "Asia/Kolkata",
    ]


@pytest.mark.parametrize(
    ("tz", "utc_now", "expected"),
    [
        ("America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        ("Europe/London", datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 9, 0, tzinfo=UTC)),
    ],
)
def test_next_opening_across_a_dst_change_is_the_local_morning(tz, utc_now, expected) -> None:
    opening = next_opening(NINE_TO_NINE, tz, utc_now)
    assert opening is not None and opening.astimezone(UTC) == expected


def test_next_opening_finds_the_local_morning() -> None:
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # midnight in Tokyo
    opening = next_opening(NINE_TO_NINE, "Asia/Tokyo", now)
    assert opening is not None and opening.astimezone(UTC) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "attempts", "status", "delay_s"),
    [
        (Outcome.ANSWERED, 1, DestinationStatus.DONE, None),
        (Outcome.BUSY, 1, DestinationStatus.RETRY_WAIT, 300),
        (Outcome.BUSY, 3, DestinationStatus.DONE, None),
        (Outcome.NO_ANSWER, 2, DestinationStatus.RETRY_WAIT, 1800),
        (Outcome.FAILED, 1, DestinationStatus.RETRY_WAIT, 600),
        (Outcome.FAILED, 2, DestinationStatus.FAILED, None),
        (Outcome.REJECTED, 1, DestinationStatus.FAILED, None),
        (Outcome.UNKNOWN, 1, DestinationStatus.UNKNOWN, None),
        (Outcome.MACHINE, 1, DestinationStatus.DONE, None),
    ],
)
def test_default_retry_policy_per_outcome(outcome, attempts, status, delay_s) -> None:
    step = next_step(outcome, attempts, {}, NOW)
    assert step.status == status
    assert step.outcome == outcome
    if delay_s is None:
        assert step.next_attempt_at is None
    else:
        assert step.next_attempt_at is not None
        assert (step.next_attempt_at - NOW).total_seconds() == delay_s


def test_campaign_policy_overrides_defaults_and_end_at_stops_retries() -> None:
    policy = {"busy": {"delay_s": 60, "max_attempts": 5}}
    assert next_step(Outcome.BUSY, 4, policy, NOW).status == DestinationStatus.RETRY_WAIT
    ends_soon = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
    assert next_step(Outcome.BUSY, 1, policy, NOW, end_at=ends_soon).status == DestinationStatus.DONE


@pytest.mark.parametrize(
    "policy",
    [
        {"bogus": {}},
        {"busy": {"delay_s": -1}},
        {"busy": {"max_attempts": 0}},
        {"busy": 3},
        {"busy": {"max_attempts": True}},
    ],
)
def test_invalid_policies_are_refused_with_the_key_named(policy) -> None:
    with pytest.raises(InvalidPolicy, match="retry_policy"):
        validate_policy(policy)
