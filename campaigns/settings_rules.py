"""A campaign's settings and their rules, shared by every way in (CLI, HTTP API, Python): one function per
field, each raising InvalidSetting that names the field. Pure; control.configure applies them.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime, time
from typing import Any

from campaigns.errors import InvalidRequest
from campaigns.numbers import normalise_caller_id, valid_timezone
from campaigns.provider_options import InvalidOption, https_refusal, validate_provider_options
from campaigns.retry_policy import InvalidPolicy, validate_policy
from campaigns.states import Routing

MAX_CPS = 10_000.0
MAX_COUNT = 1_000_000  # max_concurrent and weight: far above any carrier's limit, inside INTEGER


@dataclasses.dataclass
class CampaignSettings:
    """Fields an operator may set on a campaign; None leaves a field as it is."""

    account_id: int | None = None
    caller_id: str | None = None
    answer_url: str | None = None
    cps: float | None = None
    max_concurrent: int | None = None
    weight: int | None = None
    window_start: time | None = None
    window_end: time | None = None
    window_days: list[int] | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    timezone_override: str | None = None
    retry_policy: dict[str, Any] | None = None
    provider_options: dict[str, Any] | None = None
    observe_holidays: bool | None = None  # skip each destination's national public holidays
    blackout_dates: list[date] | None = None  # the campaign's own days off (replaces the list)
    routing: str | None = None  # how attempts spread over its accounts: failover | split (states.Routing)


class InvalidSetting(InvalidRequest):
    """One setting breaks its rule; `field` names it as the API does (caller_id, days, cps …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_days(spec: str) -> list[int]:
    """'1-5' or '1,3,5' (ISO weekdays, 1 = Monday) as a sorted list; InvalidSetting otherwise."""
    days: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-"))
                if first > last:
                    raise InvalidSetting("days", f"{part!r} runs backwards; write {last}-{first}")
                days.update(range(first, last + 1))
            else:
                days.add(int(part))
        except ValueError:
            raise InvalidSetting("days", f"expected e.g. 1-5 or 1,3,5, not {spec!r}") from None
    return check_days(sorted(days))


def check_days(days: list[int]) -> list[int]:
    if not days:
        raise InvalidSetting("days", "at least one ISO weekday (1 = Monday … 7 = Sunday)")
    if not set(days) <= set(range(1, 8)):
        raise InvalidSetting("days", "ISO weekdays are 1 (Monday) to 7 (Sunday)")
    return sorted(set(days))


def check_cps(value: float) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= MAX_CPS:
        raise InvalidSetting("cps", f"calls per second above 0 and at most {MAX_CPS:g}, not {value}")
    return float(value)


def check_positive(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COUNT:
        raise InvalidSetting(field, f"must be a whole number from 1 to {MAX_COUNT:,}, not {value}")
    return value


def check_timezone(value: str) -> str:
    zone = valid_timezone(value)
    if zone is None:
        raise InvalidSetting("timezone", f"unknown time zone {value!r}; use an IANA name like Europe/Paris")
    return zone


def check_caller_id(value: str, region: str) -> str:
    try:
        return normalise_caller_id(value, region)
    except ValueError as exc:
        raise InvalidSetting("caller_id", str(exc)) from None


def check_routing(value: str) -> str:
    if value not in {r.value for r in Routing}:
        raise InvalidSetting("routing", f"failover or split, not {value!r}")
    return value


def check_answer_url(value: str, *, plain_http: bool = False) -> str:
    if not value.startswith(("https://", "http://")) or any(c in value for c in " \t\r\n"):
        raise InvalidSetting("answer_url", f"an http(s) URL, not {value[:80]!r}")
    refusal = https_refusal(value, plain_http=plain_http)
    if refusal is not None:
        raise InvalidSetting("answer_url", refusal)
    return value


def checked(
    settings: CampaignSettings, *, region: str, provider: str | None, plain_http_urls: bool = False
) -> CampaignSettings:
    """The settings with every given field checked and normalised (caller ID to E.164); the answer, fallback
    and audio URLs must be https unless `plain_http_urls` (DIALER_ENVIRONMENT=development)."""
    changes: dict[str, Any] = {}
    if settings.caller_id is not None:
        changes["caller_id"] = check_caller_id(settings.caller_id, region)
    if settings.timezone_override is not None:
        changes["timezone_override"] = check_timezone(settings.timezone_override)
    if settings.cps is not None:
        changes["cps"] = check_cps(settings.cps)
    for field in ("max_concurrent", "weight"):
        if getattr(settings, field) is not None:
            check_positive(field, getattr(settings, field))
    if settings.window_days is not None:
        changes["window_days"] = check_days(settings.window_days)
    if settings.routing is not None:
        check_routing(settings.routing)
    if settings.answer_url is not None:
        check_answer_url(settings.answer_url, plain_http=plain_http_urls)
    if settings.start_at and settings.end_at and settings.end_at <= settings.start_at:
        raise InvalidSetting("end_at", "must be after start_at")
    if settings.retry_policy is not None:
        try:
            validate_policy(settings.retry_policy)
        except InvalidPolicy as exc:
            raise InvalidSetting("retry_policy", str(exc)) from None
    if settings.provider_options is not None:
        try:
            validate_provider_options(provider, settings.provider_options, plain_http_urls=plain_http_urls)
        except InvalidOption as exc:
            raise InvalidSetting(exc.field, exc.message) from None
    return dataclasses.replace(settings, **changes)
