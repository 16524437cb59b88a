"""The tables as SQLModel classes, equal to schema.sql (tests/test_schema_parity.py), and the one
definition of each column's type that the API's response shapes derive from.

schema.sql stays the canonical DDL, and every query is SQL over psycopg (COPY for loads, conditional
UPDATEs for state changes, SKIP LOCKED claims): no code path reads or writes rows through these classes.
They are layered as the FastAPI full-stack template layers them: `XBase` holds the columns the API shows
as they are stored, `X(XBase, table=True)` adds the table's own columns, and the API's shapes
(workers/entrypoints/api/schemas.py) and the domain's reports (campaigns/reports.py) subclass the Base
instead of declaring those columns again. No field has a Python default: a row read back has every column,
and a row is inserted by SQL, where the column's server default (the DDL's DEFAULT) applies.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Each helper returns sqlmodel.Field(...), typed Any by SQLModel so that it fits any annotation.


def _column(kind: Any, *constraints: Any, nullable: bool = False, default: str | None = None,
            **options: Any) -> Any:
    """A column of SQL type `kind`; `default` is the DDL's DEFAULT expression, as SQL text."""
    server_default = text(default) if default is not None else None
    return Field(sa_column=Column(kind, *constraints, nullable=nullable, server_default=server_default,
                                  **options))


def _pk() -> Any:
    return _column(BigInteger, primary_key=True, autoincrement=True)


def _text(nullable: bool = False, default: str | None = None) -> Any:
    return _column(Text, nullable=nullable, default=f"'{default}'" if default is not None else None)


def _int(nullable: bool = False, default: int | None = None, kind: Any = Integer) -> Any:
    return _column(kind, nullable=nullable, default=str(default) if default is not None else None)


def _double(nullable: bool = False) -> Any:
    return _column(Double, nullable=nullable)


def _jsonb() -> Any:
    return _column(JSONB, default="'{}'::jsonb")


def _timestamp(nullable: bool = True, now: bool = False) -> Any:
    return _column(DateTime(timezone=True), nullable=nullable, default="now()" if now else None)


def _texts(nullable: bool = True) -> Any:
    return _column(ARRAY(Text), nullable=nullable)


def _uuid() -> Any:
    return _column(Uuid, nullable=True)


def _fk(target: str, nullable: bool = False, ondelete: str | None = None) -> Any:
    return _column(BigInteger, ForeignKey(target, ondelete=ondelete), nullable=nullable)


class ProviderAccount(SQLModel, table=True):
    __tablename__ = "provider_account"
    __table_args__ = (UniqueConstraint("name", name="provider_account_name_key"),)

    id: int = _pk()
    name: str = _text()
    provider: str = _text()
    auth_id: str = _text()
    auth_token_encrypted: str = _text()
    webhook_secret_encrypted: str | None = _text(nullable=True)
    base_url: str = _text()
    cps: float = _double()
    max_concurrent: int = _int()
    options: dict[str, Any] = _jsonb()
    created_at: datetime = _timestamp(nullable=False, now=True)
    max_attempts_per_number_day: int | None = _int(nullable=True)
    max_attempts_per_number_week: int | None = _int(nullable=True)


class CampaignBase(SQLModel):
    """A campaign as the operators see it listed and reported: its name, state, account and load counts."""

    id: int = _pk()
    name: str = _text()
    state: str = _text(default="loading")
    state_reason: str | None = _text(nullable=True)
    account_id: int | None = _fk("provider_account.id", nullable=True)
    rows_total: int = _int(default=0)
    rows_loaded: int = _int(default=0)
    rows_rejected: int = _int(default=0)


class CampaignSettingsBase(SQLModel):
    """The settings an operator gives a campaign that the API shows as they are stored."""

    caller_id: str | None = _text(nullable=True)
    answer_url: str | None = _text(nullable=True)
    default_region: str = _text(default="US")
    cps: float | None = _double(nullable=True)
    max_concurrent: int | None = _int(nullable=True)
    weight: int = _int(default=1)
    start_at: datetime | None = _timestamp()
    end_at: datetime | None = _timestamp()
    retry_policy: dict[str, Any] = _jsonb()
    provider_options: dict[str, Any] = _jsonb()


class CampaignTimestamps(SQLModel):
    """When a campaign was created and last changed."""

    created_at: datetime = _timestamp(nullable=False, now=True)
    updated_at: datetime = _timestamp(nullable=False, now=True)


class Campaign(CampaignBase, CampaignSettingsBase, CampaignTimestamps, table=True):
    __tablename__ = "campaign"

    # The API shows these differently from how they are stored (a window string, sorted days, `timezone`,
    # `throttled`), so they are the table's own.
    window_start: time = _column(Time, default="'09:00'")
    window_end: time = _column(Time, default="'21:00'")
    window_days: list[int] = _column(ARRAY(SmallInteger), default="'{1,2,3,4,5,6,7}'")
    timezone_override: str | None = _text(nullable=True)
    throttled_count: int = _int(default=0, kind=BigInteger)
    observe_holidays: bool = _column(Boolean, default="false")
    blackout_dates: list[date] = _column(ARRAY(Date), default="'{}'")
    archived_at: datetime | None = _timestamp()
    archived_account: str | None = _text(nullable=True)
    input_columns: list[str] = _column(ARRAY(Text), default="'{}'")  # the upload's columns, in order
    routing: str = _text(default="failover")  # 'failover' | 'split' (campaigns.account_routing)


class Destination(SQLModel, table=True):
    __tablename__ = "destination"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="destination_campaign_id_number_key"),)

    id: int = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()
    number: str = _text()
    variables: dict[str, Any] = _jsonb()
    timezone: str = _text()
    status: str = _text(default="pending")
    attempts_made: int = _int(default=0)
    next_attempt_at: datetime | None = _timestamp()
    outcome: str | None = _text(nullable=True)
    updated_at: datetime = _timestamp(nullable=False, now=True)
    run_no: int = _int(default=1)
    attempts_before_run: int = _int(default=0)
    claim_account_id: int | None = _int(nullable=True, kind=BigInteger)  # the account its claim is for


class CallAttempt(SQLModel, table=True):
    __tablename__ = "call_attempt"
    __table_args__ = (
        UniqueConstraint("destination_id", "attempt_no", name="call_attempt_destination_id_attempt_no_key"),
    )

    id: int = _pk()
    destination_id: int = _fk("destination.id", ondelete="CASCADE")
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    # NULL once the account of an archived campaign is removed (its results stay readable).
    account_id: int | None = _fk("provider_account.id", nullable=True)
    attempt_no: int = _int()
    batch_id: uuid.UUID | None = _uuid()
    status: str = _text(default="dialing")
    request_uuid: str | None = _text(nullable=True)
    call_uuid: str | None = _text(nullable=True)
    provider_status: str | None = _text(nullable=True)
    outcome: str | None = _text(nullable=True)
    hangup_cause: str | None = _text(nullable=True)
    error_message: str | None = _text(nullable=True)
    cost: Decimal | None = _column(Numeric, nullable=True)
    created_at: datetime = _timestamp(nullable=False, now=True)
    sent_at: datetime | None = _timestamp()
    ring_at: datetime | None = _timestamp()
    answer_at: datetime | None = _timestamp()
    end_at: datetime | None = _timestamp()
    duration: int | None = _int(nullable=True)
    billed_duration: int | None = _int(nullable=True)
    lease_expires_at: datetime = _timestamp(nullable=False)
    opt_out_digits: str | None = _text(nullable=True)
    opted_out_at: datetime | None = _timestamp()
    run_no: int = _int(default=1)
    spoken_text: str | None = _text(nullable=True)


class CallEvent(SQLModel, table=True):
    __tablename__ = "call_event"
    __table_args__ = (
        UniqueConstraint("provider", "account_id", "event_key", name="call_event_account_event_key"),
    )

    id: int = _pk()
    provider: str = _text()
    account_id: int | None = _fk("provider_account.id", nullable=True)
    event_key: str = _text()
    kind: str = _text()
    batch_id: uuid.UUID | None = _uuid()
    request_uuid: str | None = _text(nullable=True)
    call_uuid: str | None = _text(nullable=True)
    destination: str | None = _text(nullable=True)
    payload: dict[str, Any] = _column(JSONB)
    headers: dict[str, Any] = _jsonb()
    received_at: datetime = _timestamp(nullable=False, now=True)
    applied_at: datetime | None = _timestamp()
    attempt_id: int | None = _fk("call_attempt.id", nullable=True, ondelete="SET NULL")
    rejected_reason: str | None = _text(nullable=True)


class RejectedCallback(SQLModel, table=True):
    __tablename__ = "rejected_callback"

    id: int = _pk()
    provider: str = _text()
    account_id: int | None = _fk("provider_account.id", nullable=True, ondelete="CASCADE")
    kind: str = _text()
    reason: str = _text()
    body: str = _text()
    headers: dict[str, Any] = _jsonb()
    received_at: datetime = _timestamp(nullable=False, now=True)


class RejectedCallbackHour(SQLModel, table=True):
    __tablename__ = "rejected_callback_hour"

    account_id: int = _column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"),
                              primary_key=True)
    hour: datetime = _column(DateTime(timezone=True), primary_key=True)
    received: int = _int(default=0)


class DncNumber(SQLModel, table=True):
    __tablename__ = "dnc_number"

    number: str = _column(Text, primary_key=True)
    reason: str | None = _text(nullable=True)
    added_at: datetime = _timestamp(nullable=False, now=True)


class AccountDncNumber(SQLModel, table=True):
    __tablename__ = "account_dnc_number"

    account_id: int = _column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"),
                              primary_key=True)
    number: str = _column(Text, primary_key=True)
    reason: str | None = _text(nullable=True)
    source: str = _text(default="operator")
    added_at: datetime = _timestamp(nullable=False, now=True)


class RejectedRowBase(SQLModel):
    """A CSV row that was not loaded, as the operators page through them: its raw value and why."""

    raw_value: str = _text()
    reason: str = _text()
    detail: str | None = _text(nullable=True)


class RejectedRow(RejectedRowBase, table=True):
    __tablename__ = "rejected_row"

    id: int = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()  # the API calls it `line`


class ProviderBatch(SQLModel, table=True):
    __tablename__ = "provider_batch"

    batch_id: uuid.UUID = _column(Uuid, primary_key=True)
    account_id: int = _fk("provider_account.id", ondelete="CASCADE")
    request_uuids: list[str] = _texts(nullable=False)
    created_at: datetime = _timestamp(nullable=False, now=True)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("key_hash", name="api_key_key_hash_key"),)

    id: int = _pk()
    name: str = _text()
    key_hash: str = _text()
    created_at: datetime = _timestamp(nullable=False, now=True)
    revoked_at: datetime | None = _timestamp()
    role: str = _text()  # admin, operator or viewer (campaigns.api_keys.Role)


class ApiKeyAccount(SQLModel, table=True):
    __tablename__ = "api_key_account"

    api_key_id: int = _column(BigInteger, ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True)
    account_id: int = _column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"),
                              primary_key=True)


class AccountBudgetState(SQLModel, table=True):
    __tablename__ = "account_budget_state"

    account_id: int = _column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"),
                              primary_key=True)
    adaptive_cps: float | None = _double(nullable=True)
    paused_until: datetime | None = _timestamp()
    updated_at: datetime = _timestamp(nullable=False, now=True)


class CampaignFallbackAccount(SQLModel, table=True):
    __tablename__ = "campaign_fallback_account"
    __table_args__ = (
        UniqueConstraint("campaign_id", "account_id", name="campaign_fallback_account_account_key"),
    )

    campaign_id: int = _column(BigInteger, ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    position: int = _column(SmallInteger, primary_key=True)
    account_id: int = _fk("provider_account.id")
    caller_id: str | None = _text(nullable=True)


class AccountCircuit(SQLModel, table=True):
    __tablename__ = "account_circuit"

    account_id: int = _column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"),
                              primary_key=True)
    state: str = _text(default="closed")
    cause: str | None = _text(nullable=True)
    reason: str | None = _text(nullable=True)
    changed_at: datetime = _timestamp(nullable=False, now=True)
    retry_at: datetime | None = _timestamp()
    opened_in_a_row: int = _int(default=0)
    probes_claimed: int = _int(default=0)
    probes_passed: int = _int(default=0)


class AccountCircuitChange(SQLModel, table=True):
    __tablename__ = "account_circuit_change"

    id: int = _pk()
    account_id: int = _fk("provider_account.id", ondelete="CASCADE")
    state: str = _text()
    cause: str | None = _text(nullable=True)
    reason: str | None = _text(nullable=True)
    changed_at: datetime = _timestamp(nullable=False, now=True)


class LoaderTally(SQLModel, table=True):
    __tablename__ = "loader_tally"

    singleton: bool = _column(Boolean, primary_key=True, default="true")  # CHECK (singleton): one row
    rows_read: int = _int(default=0, kind=BigInteger)
    seconds: float = _column(Double, default="0")


class CampaignRunBase(SQLModel):
    """One run of a campaign as `GET /campaigns/{id}/runs` lists it, before its counts."""

    run_no: int = _int()
    trigger: str = _text()
    only_outcomes: list[str] | None = _texts()
    destinations: int = _int(default=0)
    started_at: datetime = _timestamp(nullable=False, now=True)
    ends_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    finish_reason: str | None = _text(nullable=True)


class CampaignRun(CampaignRunBase, table=True):
    __tablename__ = "campaign_run"
    __table_args__ = (UniqueConstraint("campaign_id", "run_no", name="campaign_run_campaign_id_run_no_key"),)

    id: int = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")


class CampaignSchedule(SQLModel, table=True):
    __tablename__ = "campaign_schedule"
    __table_args__ = (UniqueConstraint("campaign_id", name="campaign_schedule_campaign_id_key"),)

    id: int = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    cron: str = _text()
    timezone: str = _text()
    only_outcomes: list[str] | None = _texts()
    run_for_s: int | None = _int(nullable=True)
    until_at: datetime | None = _timestamp()
    next_run_at: datetime | None = _timestamp()
    enabled: bool = _column(Boolean, default="true")
    last_note: str | None = _text(nullable=True)
    created_at: datetime = _timestamp(nullable=False, now=True)


class LoadWarning(SQLModel, table=True):
    __tablename__ = "load_warning"

    id: int = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()
    reason: str = _text()
    detail: str | None = _text(nullable=True)


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoint"
    __table_args__ = (UniqueConstraint("account_id", name="webhook_endpoint_account_id_key"),
                      UniqueConstraint("campaign_id", name="webhook_endpoint_campaign_id_key"))

    id: int = _pk()
    account_id: int | None = _fk("provider_account.id", nullable=True, ondelete="CASCADE")
    campaign_id: int | None = _fk("campaign.id", nullable=True, ondelete="CASCADE")
    url: str = _text()
    secret_encrypted: str = _text()
    created_at: datetime = _timestamp(nullable=False, now=True)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("message_id", name="webhook_delivery_message_id_key"),)

    id: int = _pk()
    endpoint_id: int = _fk("webhook_endpoint.id", ondelete="CASCADE")
    message_id: str = _text()
    event_type: str = _text()
    campaign_id: int | None = _int(nullable=True, kind=BigInteger)
    order_key: str = _text()
    payload: dict[str, Any] = _column(JSONB)
    state: str = _text(default="pending")
    attempts: int = _int(default=0)
    next_attempt_at: datetime = _timestamp(nullable=False, now=True)
    last_status: int | None = _int(nullable=True)
    last_error: str | None = _text(nullable=True)
    created_at: datetime = _timestamp(nullable=False, now=True)
    finished_at: datetime | None = _timestamp()
