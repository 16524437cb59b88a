"""Blackout dates (promise 3): public holidays of each destination's own country, judged in its own time
zone, and the campaign's own dates. A destination on one waits for its next open window. The calendar
cases run on fixed dates; the end-to-end case runs on real workers with today's real holidays."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
import psycopg
import pytest
from phonenumbers import timezone as number_zones

from campaigns.accounts import add_account
from campaigns.blackouts import Blackouts, country_of, is_blacked_out, next_open, window_day
from campaigns.loader import load_campaign_csv
from campaigns.windows import window_of
from tests.engine_harness import Stack, prepare_and_start, running_stack
from tests.polling import wait_for
from tests.sim_helpers import RunningSimulator, start_simulator

WEEKDAYS_9_TO_5 = window_of(time(9), time(17), [1, 2, 3, 4, 5])
HOLIDAYS = Blackouts(observe_holidays=True)
LONDON, NEW_YORK = "Europe/London", "America/New_York"
GB_NUMBER, US_NUMBER = "+447400123456", "+12125550123"


def test_country_comes_from_the_number() -> None:
    assert (country_of(GB_NUMBER), country_of(US_NUMBER)) == ("GB", "US")
    assert country_of("sip:alice@example.com") is None


def test_christmas_in_britain_waits_past_boxing_day_and_the_weekend() -> None:
    christmas_10am = datetime(2031, 12, 25, 10, tzinfo=UTC)  # Thursday
    assert is_blacked_out(HOLIDAYS, "GB", window_day(WEEKDAYS_9_TO_5, LONDON, christmas_10am))
    opening = next_open(HOLIDAYS, WEEKDAYS_9_TO_5, LONDON, "GB", christmas_10am)
    assert opening == datetime(2031, 12, 29, 9, tzinfo=ZoneInfo(LONDON))  # Monday 09:00 London


def test_independence_day_holds_americans_but_not_britons() -> None:
    july_4th_3pm_utc = datetime(2031, 7, 4, 15, tzinfo=UTC)  # Friday
    assert is_blacked_out(HOLIDAYS, "US", window_day(WEEKDAYS_9_TO_5, NEW_YORK, july_4th_3pm_utc))
    assert not is_blacked_out(HOLIDAYS, "GB", window_day(WEEKDAYS_9_TO_5, LONDON, july_4th_3pm_utc))
    assert next_open(HOLIDAYS, WEEKDAYS_9_TO_5, NEW_YORK, "US", july_4th_3pm_utc) == datetime(
        2031, 7, 7, 9, tzinfo=ZoneInfo(NEW_YORK)
    )
    assert next_open(HOLIDAYS, WEEKDAYS_9_TO_5, LONDON, "GB", july_4th_3pm_utc) == july_4th_3pm_utc


def test_the_day_is_judged_in_the_destinations_own_time_zone() -> None:
    early_christmas_utc = datetime(2031, 12, 25, 3, tzinfo=UTC)  # 03:00 in London, 22:00 on the 24th in NY
    all_day = window_of(time(0), time(0), [1, 2, 3, 4, 5, 6, 7])
    assert is_blacked_out(HOLIDAYS, "GB", window_day(all_day, LONDON, early_christmas_utc))
    assert not is_blacked_out(HOLIDAYS, "US", window_day(all_day, NEW_YORK, early_christmas_utc))


def test_the_campaigns_own_dates_and_overnight_windows_belong_to_the_day_they_start() -> None:
    own = Blackouts(dates=frozenset({date(2031, 3, 5)}))
    overnight = window_of(time(22), time(2), [1, 2, 3, 4, 5, 6, 7])
    after_midnight = datetime(2031, 3, 6, 1, tzinfo=UTC)  # 01:00 on the 6th: the 5th's window
    assert window_day(overnight, "UTC", after_midnight) == date(2031, 3, 5)
    assert is_blacked_out(own, "US", date(2031, 3, 5)) and not is_blacked_out(own, "US", date(2031, 3, 6))
    assert next_open(own, overnight, "UTC", "US", after_midnight) == datetime(2031, 3, 6, 22, tzinfo=UTC)


def _holiday_countries_today(count: int) -> list[tuple[str, str]]:
    """(E.164 example number, country) of countries whose own calendar has a holiday today in their zone."""
    now = datetime.now(UTC)
    found: list[tuple[str, str]] = []
    for country in sorted(holidays.list_supported_countries()):
        example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
        zones = number_zones.time_zones_for_number(example) if example else ()
        if len(zones) != 1 or zones[0] == "Etc/Unknown":
            continue
        local = (now + timedelta(minutes=10)).astimezone(ZoneInfo(zones[0])).date()
        if local == now.astimezone(ZoneInfo(zones[0])).date() and local in holidays.country_holidays(
            country, years=local.year
        ):
            found.append((phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164), country))
    return found[:count]


SIM_ACCOUNTS: list[dict[str, Any]] = [
    {"provider": "plivo", "auth_id": "MAHOLIDAY", "auth_token": "tok-hol", "cps": 50, "max_concurrent": 100},
]


@pytest.fixture(scope="module")
def env(database_url: str, redis_client: Any) -> Iterator[tuple[RunningSimulator, Stack]]:
    outcomes = {"answered": 100, "busy": 0, "no_answer": 0, "failed": 0, "machine": 0,
                "talk_time": [1, 2], "ring_time": [1, 2]}
    with start_simulator({"accounts": SIM_ACCOUNTS, "outcomes": outcomes}, speed=20.0, seed=3) as sim, \
            running_stack(workers=1, threads=4) as stack:
        yield sim, stack


def test_destinations_in_two_countries_on_their_public_holiday_wait_for_their_next_open_day(
    env: tuple[RunningSimulator, Stack], db: psycopg.Connection
) -> None:
    sim, _ = env
    on_holiday = _holiday_countries_today(2)
    if len(on_holiday) < 2:
        pytest.skip("no two supported countries have a public holiday today")
    def callable_today(number: str, zone: str) -> bool:
        today = datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
        return not is_blacked_out(HOLIDAYS, country_of(number), today)

    working = [n for n, zone in (("+12125550177", NEW_YORK), ("+447400123477", LONDON))
               if callable_today(n, zone)]
    assert working, "neither the US nor GB number is callable today"
    csv_text = "phone\n" + "".join(f"{n}\n" for n in [n for n, _ in on_holiday] + working)
    campaign_id = load_campaign_csv(name="holidays", source=io.BytesIO(csv_text.encode())).campaign_id
    account_id = add_account(db, name="holidays", provider="plivo", auth_id="MAHOLIDAY", auth_token="tok-hol",
                             cps=50, max_concurrent=100, base_url=sim.base_url)
    prepare_and_start(db, campaign_id, account_id, start=False)
    db.execute("UPDATE campaign SET observe_holidays = true, state = 'running' WHERE id = %s", (campaign_id,))

    def statuses() -> dict[str, tuple[str, datetime | None]]:
        rows = db.execute("SELECT number, status, next_attempt_at FROM destination WHERE campaign_id = %s",
                          (campaign_id,)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    wait_for(lambda: all(statuses()[n][0] == "done" for n in working)
             and all(statuses()[n][0] == "pending" and statuses()[n][1] for n, _ in on_holiday),
             timeout=60, what="working numbers dialed and holiday numbers handed back")
    for number, country in on_holiday:
        zone = ZoneInfo(number_zones.time_zones_for_number(phonenumbers.parse(number))[0])
        _, not_before = statuses()[number]
        assert not_before is not None
        resumes_on = not_before.astimezone(zone).date()
        assert resumes_on > datetime.now(UTC).astimezone(zone).date()  # not today: its holiday
        assert resumes_on not in holidays.country_holidays(country, years=resumes_on.year)
    calls = sim.ledger()["calls"]
    dialed = {"+" + c["destination"].lstrip("+") for c in calls if c["account"] == "MAHOLIDAY"}
    assert dialed == set(working)  # the carrier never saw a holiday call
    db.execute("UPDATE campaign SET state = 'paused' WHERE id = %s", (campaign_id,))
