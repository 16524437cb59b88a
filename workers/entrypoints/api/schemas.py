"""Request and response bodies of the operators' campaign API (pydantic).

Inputs refuse unknown fields and name the bad one. Outputs declare no column and no report field again:
a response made of a table's columns subclasses that table's Base (campaigns.models), and a report is the
domain's own (campaigns.reports), subclassed under the name the OpenAPI document has always given it.
Subclasses carry comments, not docstrings: a docstring would become the schema's description.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns import control
from campaigns.models import CampaignBase, CampaignSettingsBase, CampaignTimestamps, RejectedRowBase
from campaigns.numbers import valid_timezone
from campaigns.provider_options import ProviderOptions
from campaigns.reports import CampaignStatus, LoadReport
from campaigns.retry_policy import InvalidPolicy, validate_policy
from campaigns.states import Routing


class FieldError(BaseModel):
    field: str  # dotted path inside its location, e.g. "cps" or "retry_policy.busy"
    location: str  # body, query, path, form
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: a stable code, one readable line, and the fields at fault if any."""

    error: str  # e.g. unauthorized, not_found, conflict, invalid_field, empty_file, no_phone_column
    message: str
    fields: list[FieldError] | None = None


class LoadReportOut(LoadReport):
    pass  # the load report under its name in the OpenAPI document


class CampaignSummary(CampaignTimestamps, CampaignBase):
    # Bases in this order so the campaign's columns come first (id, name, state…), then the timestamps.
    throttled: int  # 429s met while dialing (not attempts): the campaign's throttled_count


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    limit: int
    offset: int


class CampaignAccountOut(BaseModel):
    """One of a campaign's accounts, in its order: the primary first, then its fallbacks."""

    account: str  # the account's name
    caller_id: str | None  # the caller id it dials with: its own, or the campaign's
    role: Literal["primary", "fallback"]


class AttemptOut(BaseModel):
    """One attempt at a destination: which account placed it and how it went."""

    run_no: int
    attempt_no: int
    account: str | None  # the name of the account that placed it (none: an account since removed)
    status: str
    outcome: str | None
    sent_at: datetime | None
    error: str | None


class CampaignSettingsOut(CampaignSettingsBase):
    # The settings shown otherwise than stored: the account's id (a column of CampaignBase), the window's two
    # columns as one string, the days sorted, and timezone_override under the name PATCH takes; and the
    # campaign's accounts in order with how its attempts spread over them.
    account_id: int | None
    window: str  # "HH:MM-HH:MM", local time of each destination (or of `timezone`)
    days: list[int]
    timezone: str | None
    accounts: list[CampaignAccountOut] = []
    routing: str = Routing.FAILOVER.value  # failover | split (campaigns.states.Routing)


class CampaignStatusOut(CampaignStatus):
    # The status report and the campaign's settings; the account's id is shown among the settings.
    account_id: int | None = Field(exclude=True)
    settings: CampaignSettingsOut
    notify_secret: str | None = Field(
        None, description="Only in the answer to a PATCH setting notify_url: its signing secret, shown once")


class RejectedRowOut(RejectedRowBase):
    line: int  # the row's line_no in the CSV


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


class AccountEntry(BaseModel):
    """One account of a campaign's list, with the caller id it dials with (none: the campaign's)."""

    model_config = ConfigDict(extra="forbid")

    account: str | int = Field(description="Provider account, by name or id")
    caller_id: str | None = Field(None, min_length=1, description="E.164, or national in the default region")


class CampaignUpdate(BaseModel):
    """PATCH body: only the fields given change; null or absent leaves a field as it is."""

    model_config = ConfigDict(extra="forbid")

    account: str | int | None = Field(None, description="Provider account, by name or id")
    accounts: list[str | int | AccountEntry] | None = Field(
        None, min_length=1, max_length=32,
        description="The campaign's accounts in order: the first is its primary (as `account`), the others "
                    "its fallbacks, which replace the ones it had. Each by name or id, or as {\"account\", "
                    "\"caller_id\"} with the caller id it dials with (the primary's is the campaign's own)")
    routing: Routing | None = Field(None, description="failover: the first healthy account takes new "
                                    "attempts; split: every healthy account, each at its own CPS")
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
    provider_options: ProviderOptions | None = Field(
        None, description="Merged into the current options; only the keys given change"
    )
    observe_holidays: bool | None = Field(None, description="Skip each destination's national holidays")
    blackout_dates: list[date] | None = Field(None, description="The campaign's own days off (replaces)")
    notify_url: str | None = Field(
        None, max_length=2000,
        description="https URL for this campaign's events (replaces its account's); '' removes it")

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
        if self.account is not None and self.accounts is not None:
            raise ValueError("give account (the primary alone) or accounts (the whole list), not both")
        return self

    def to_settings(self, *, account_id: int | None, caller_id: str | None) -> control.CampaignSettings:
        """control's settings, given the account id and normalised caller ID the route resolved."""
        window_start, window_end = parse_window(self.window) if self.window else (None, None)
        return control.CampaignSettings(
            account_id=account_id, caller_id=caller_id, answer_url=self.answer_url, cps=self.cps,
            max_concurrent=self.max_concurrent, weight=self.weight, window_start=window_start,
            window_end=window_end, window_days=sorted(set(self.days)) if self.days else None,
            start_at=self.start_at, end_at=self.end_at, timezone_override=self.timezone,
            retry_policy=self.retry_policy,
            provider_options=(
                self.provider_options.model_dump(exclude_unset=True) if self.provider_options else None
            ),
            observe_holidays=self.observe_holidays, blackout_dates=self.blackout_dates,
            routing=self.routing.value if self.routing else None)


def parse_window(value: str) -> tuple[time, time]:
    """'09:00-21:00' -> (09:00, 21:00); ValueError naming the expected form."""
    try:
        start, end = value.split("-")
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"expected HH:MM-HH:MM, e.g. 09:00-21:00, not {value!r}") from None


def format_window(start: time, end: time) -> str:
    return f"{start:%H:%M}-{end:%H:%M}"
