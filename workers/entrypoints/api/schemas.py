"""Request and response bodies of the operators' campaign API (pydantic).

Inputs refuse unknown fields and name the bad one; outputs mirror the domain's dataclasses
(campaigns.loader.LoadReport, campaigns.control.CampaignStatus) without exposing table internals.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns import control
from campaigns.numbers import valid_timezone
from campaigns.retry_policy import InvalidPolicy, validate_policy


class FieldError(BaseModel):
    field: str  # dotted path inside its location, e.g. "cps" or "retry_policy.busy"
    location: str  # body, query, path, form
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: a stable code, one readable line, and the fields at fault if any."""

    error: str  # e.g. unauthorized, not_found, conflict, invalid_field, empty_file, no_phone_column
    message: str
    fields: list[FieldError] | None = None


class LoadReportOut(BaseModel):
    campaign_id: int
    name: str
    state: str = "draft"
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    rejects_by_reason: dict[str, int]
    encoding: str
    delimiter: str
    phone_column: str
    columns: list[str]
    seconds: float
    rows_with_warnings: int = 0  # loaded, but the message names a column they leave empty (/warnings)


class CampaignSummary(BaseModel):
    id: int
    name: str
    state: str
    state_reason: str | None
    account_id: int | None
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    throttled: int  # 429s met while dialing (not attempts)
    created_at: datetime
    updated_at: datetime


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    limit: int
    offset: int


class CampaignSettingsOut(BaseModel):
    account_id: int | None
    caller_id: str | None
    answer_url: str | None
    default_region: str
    cps: float | None
    max_concurrent: int | None
    weight: int
    window: str  # "HH:MM-HH:MM", local time of each destination (or of `timezone`)
    days: list[int]
    start_at: datetime | None
    end_at: datetime | None
    timezone: str | None
    retry_policy: dict[str, Any]
    provider_options: dict[str, Any]


class CampaignStatusOut(BaseModel):
    id: int
    name: str
    state: str
    state_reason: str | None
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    destinations_by_status: dict[str, int]
    destinations_finished: int
    attempts: int
    attempts_by_outcome: dict[str, int]  # "-" counts attempts without an outcome yet
    throttled: int
    answered_seconds: int
    mean_answered_duration_s: float | None
    settings: CampaignSettingsOut


class RejectedRowOut(BaseModel):
    line: int
    raw_value: str
    reason: str
    detail: str | None


class RejectsPage(BaseModel):
    campaign_id: int
    total: int  # matching rows, for paging
    limit: int
    offset: int
    items: list[RejectedRowOut]


class StateChange(BaseModel):
    id: int
    state: str
    state_reason: str | None
    destinations_cancelled: int | None = None  # only for cancel


class CancelOut(StateChange):
    hangup: dict[str, Any] | None = None  # only with ?hangup=true: what the carriers were asked


PositiveInt = Annotated[int, Field(gt=0)]
IsoWeekday = Annotated[int, Field(ge=1, le=7)]


class CampaignUpdate(BaseModel):
    """PATCH body: only the fields given change; null or absent leaves a field as it is."""

    model_config = ConfigDict(extra="forbid")

    account: str | int | None = Field(None, description="Provider account, by name or id")
    caller_id: str | None = Field(None, min_length=1, description="E.164, or national in the default region")
    answer_url: str | None = Field(None, pattern=r"^https?://")
    cps: float | None = Field(None, gt=0, description="The campaign's own cap, under the account's")
    max_concurrent: PositiveInt | None = None
    weight: PositiveInt | None = None
    window: str | None = Field(None, description="Local calling hours HH:MM-HH:MM; equal ends: all day")
    days: list[IsoWeekday] | None = Field(None, min_length=1, description="ISO weekdays, 1 = Monday")
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    timezone: str | None = Field(None, description="Judge the window in this zone for every destination")
    retry_policy: dict[str, Any] | None = Field(None, description='e.g. {"busy": {"delay_s": 300, '
                                                                   '"max_attempts": 3}}')
    provider_options: dict[str, Any] | None = Field(None, description="Merged into the current options")
    observe_holidays: bool | None = Field(None, description="Skip each destination's national holidays")
    blackout_dates: list[date] | None = Field(None, description="The campaign's own days off (replaces)")

    @field_validator("window")
    @classmethod
    def _window_is_a_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_is_known(cls, value: str | None) -> str | None:
        if value is not None and valid_timezone(value) is None:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris")
        return value

    @field_validator("retry_policy")
    @classmethod
    def _policy_is_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                validate_policy(value)
            except InvalidPolicy as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _end_after_start(self) -> CampaignUpdate:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self

    def to_settings(self, *, account_id: int | None, caller_id: str | None) -> control.CampaignSettings:
        """control's settings, given the account id and normalised caller ID the route resolved."""
        window_start, window_end = parse_window(self.window) if self.window else (None, None)
        return control.CampaignSettings(
            account_id=account_id, caller_id=caller_id, answer_url=self.answer_url, cps=self.cps,
            max_concurrent=self.max_concurrent, weight=self.weight, window_start=window_start,
            window_end=window_end, window_days=sorted(set(self.days)) if self.days else None,
            start_at=self.start_at, end_at=self.end_at, timezone_override=self.timezone,
            retry_policy=self.retry_policy, provider_options=self.provider_options,
            observe_holidays=self.observe_holidays, blackout_dates=self.blackout_dates)


def parse_window(value: str) -> tuple[time, time]:
    """'09:00-21:00' -> (09:00, 21:00); ValueError naming the expected form."""
    try:
        start, end = value.split("-")
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"expected HH:MM-HH:MM, e.g. 09:00-21:00, not {value!r}") from None


def format_window(start: time, end: time) -> str:
    return f"{start:%H:%M}-{end:%H:%M}"
