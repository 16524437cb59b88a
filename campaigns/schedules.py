"""Recurring runs: cron expressions read in a named time zone, and what beat does at each tick (pure).

The clock is an argument everywhere (`now`), so the scheduling decision is testable on a frozen clock;
the beat task (workers.housekeeping.run_scheduler) calls `plan_firing` with the real time and applies the
answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from campaigns.errors import InvalidRequest
from campaigns.states import RUN_SELECTABLE, CampaignState


class InvalidSchedule(InvalidRequest):
    """A cron expression, time zone or outcome list that cannot be used; the message names which."""


@dataclass(frozen=True)
class CronSpec:
    """Five cron fields and the zone they are read in: `0 10 * * 1-5` at 10:00 London time."""

    cron: str
    timezone: str


def parse_cron_spec(text: str, timezone: str | None = None) -> CronSpec:
    """`0 10 * * 1-5 Europe/London`, or five fields and `timezone` (UTC if neither names one)."""
    fields = text.split()
    if len(fields) == 6:
        cron, zone = " ".join(fields[:5]), fields[5]
        if timezone and timezone != zone:
            raise InvalidSchedule(f"cron names time zone {zone} but --timezone says {timezone}")
    elif len(fields) == 5:
        cron, zone = " ".join(fields), timezone or "UTC"
    else:
        raise InvalidSchedule(
            f"cron {text!r}: expected five fields and an optional time zone, "
            "e.g. '0 10 * * 1-5 Europe/London'"
        )
    if not croniter.is_valid(cron):
        raise InvalidSchedule(f"cron {cron!r} is not a valid five-field expression")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(f"unknown time zone {zone!r} (use an IANA name such as Europe/London)") from exc
    return CronSpec(cron, zone)


def parse_outcomes(text: str | None) -> list[str] | None:
    """`busy,no_answer` -> ['busy', 'no_answer']; None or empty: the whole list."""
    if not text:
        return None
    chosen = sorted({part.strip() for part in text.split(",") if part.strip()})
    unknown = [name for name in chosen if name not in RUN_SELECTABLE]
    if unknown:
        raise InvalidSchedule(
            f"--only: unknown outcome {', '.join(unknown)}; choose from {', '.join(sorted(RUN_SELECTABLE))}"
        )
    return chosen or None


def next_firing(spec: CronSpec, after: datetime) -> datetime:
    """The first firing strictly after `after`, in UTC. Read in the schedule's zone, so 10:00 London stays
    10:00 London across a DST change."""
    local = after.astimezone(ZoneInfo(spec.timezone))
    fired: datetime = croniter(spec.cron, local).get_next(datetime)
    return fired.astimezone(UTC)


@dataclass(frozen=True)
class ScheduleView:
    """What the planner needs to know about one campaign's schedule."""

    spec: CronSpec
    next_run_at: datetime | None
    until_at: datetime | None = None
    run_for: timedelta | None = None


@dataclass(frozen=True)
class OpenRun:
    """The campaign's run that has not finished yet, if any."""

    run_no: int
    ends_at: datetime | None


@dataclass(frozen=True)
class FiringPlan:
    """What beat does for one schedule now: start a new run (ending at `run_ends_at`) or not, and when to
    look again (`next_run_at`, None: never). `note` says why a due firing started nothing. An open run past
    its end time counts as ended: beat ends such runs before it plans."""

    start_run: bool
    run_ends_at: datetime | None
    next_run_at: datetime | None
    note: str | None = None


def run_has_ended(run: OpenRun | None, now: datetime) -> bool:
    return run is not None and run.ends_at is not None and run.ends_at <= now


def plan_firing(
    schedule: ScheduleView, open_run: OpenRun | None, campaign_state: str, now: datetime
) -> FiringPlan:
    """Decide one schedule's tick. Firings missed while beat was down start one run, not one per firing."""
    ended = run_has_ended(open_run, now)
    due_at = schedule.next_run_at
    if due_at is None or due_at > now:
        return FiringPlan(False, None, due_at)
    following = next_firing(schedule.spec, now)
    if schedule.until_at is not None and following > schedule.until_at:
        following_or_none: datetime | None = None
    else:
        following_or_none = following
    if schedule.until_at is not None and due_at > schedule.until_at:
        return FiringPlan(False, None, None, "the schedule's until date has passed")
    if campaign_state == CampaignState.CANCELLED:
        return FiringPlan(False, None, None, "the campaign is cancelled: the schedule stops")
    if campaign_state in (CampaignState.PAUSED, CampaignState.LOADING):
        return FiringPlan(False, None, following_or_none, f"skipped: the campaign is {campaign_state}")
    if open_run is not None and not ended:
        return FiringPlan(
            False, None, following_or_none, f"skipped: run {open_run.run_no} has not finished"
        )
    ends_at = following_or_none
    if schedule.run_for is not None:
        ends_at = min(ends_at, now + schedule.run_for) if ends_at else now + schedule.run_for
    return FiringPlan(True, ends_at, following_or_none)


def parse_duration(text: str | None) -> timedelta | None:
    """`90m`, `4h`, `2d` or seconds -> a timedelta; None for none."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError as exc:
        raise InvalidSchedule(f"duration {text!r}: expected e.g. 90m, 4h or 2d") from exc
    if seconds <= 0:
        raise InvalidSchedule(f"duration {text!r} must be above zero")
    return timedelta(seconds=seconds)
