"""The schema's typed mirror: SQLModel tables equal to schema.sql, kept equal by tests/test_schema_parity.py.

schema.sql is the canonical DDL and every query in the project is SQL over psycopg (COPY for loads,
conditional UPDATEs for state changes, SKIP LOCKED claims), so no code path reads or writes through these
classes today. They stay as the one typed, importable description of every table and column: what a
future ORM-level query, an API schema or a migration tool would start from, and what the parity test
holds the DDL to. The API's request and response schemas (workers/entrypoints/api/schemas.py) are
deliberately separate pydantic models: they validate operator input, which the tables do not describe.
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


def _pk() -> Any:
    return Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))


def _text(nullable: bool = False, default: str | None = None) -> Any:
    server_default = text(f"'{default}'") if default is not None else None
    return Field(default=default, sa_column=Column(Text, nullable=nullable, server_default=server_default))


def _int(nullable: bool = False, default: int | None = None, kind: Any = Integer) -> Any:
    server_default = text(str(default)) if default is not None else None
    return Field(default=default, sa_column=Column(kind, nullable=nullable, server_default=server_default))


def _jsonb(nullable: bool = False) -> Any:
    return Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=nullable, server_default=text("'{}'::jsonb"))
    )


def _timestamp(nullable: bool = True, now: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True), nullable=nullable, server_default=text("now()") if now else None
        ),
    )


def _fk(target: str, nullable: bool = False, ondelete: str | None = None) -> Any:
    return Field(
        default=None, sa_column=Column(BigInteger, ForeignKey(target, ondelete=ondelete), nullable=nullable)
    )


class ProviderAccount(SQLModel, table=True):
    __tablename__ = "provider_account"
    __table_args__ = (UniqueConstraint("name", name="provider_account_name_key"),)

    id: int | None = _pk()
    name: str = _text()
    provider: str = _text()
    auth_id: str = _text()
    auth_token_encrypted: str = _text()
    webhook_secret_encrypted: str | None = _text(nullable=True)
    base_url: str = _text()
    cps: float = Field(sa_column=Column(Double, nullable=False))
    max_concurrent: int = _int()
    options: dict[str, Any] = _jsonb()
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    max_attempts_per_number_day: int | None = _int(nullable=True)
    max_attempts_per_number_week: int | None = _int(nullable=True)


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"

    id: int | None = _pk()
    name: str = _text()
    account_id: int | None = _fk("provider_account.id", nullable=True)
    caller_id: str | None = _text(nullable=True)
    answer_url: str | None = _text(nullable=True)
    provider_options: dict[str, Any] = _jsonb()
    cps: float | None = Field(default=None, sa_column=Column(Double, nullable=True))
    max_concurrent: int | None = _int(nullable=True)
    weight: int = _int(default=1)
    default_region: str = _text(default="US")
    start_at: datetime | None = _timestamp()
    end_at: datetime | None = _timestamp()
    window_start: time = Field(
        default=time(9), sa_column=Column(Time, nullable=False, server_default=text("'09:00'"))
    )
    window_end: time = Field(
        default=time(21), sa_column=Column(Time, nullable=False, server_default=text("'21:00'"))
    )
    window_days: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7],
        sa_column=Column(ARRAY(SmallInteger), nullable=False, server_default=text("'{1,2,3,4,5,6,7}'")),
    )
    timezone_override: str | None = _text(nullable=True)
    retry_policy: dict[str, Any] = _jsonb()
    state: str = _text(default="loading")
    state_reason: str | None = _text(nullable=True)
    rows_total: int = _int(default=0)
    rows_loaded: int = _int(default=0)
    rows_rejected: int = _int(default=0)
    throttled_count: int = _int(default=0, kind=BigInteger)
    observe_holidays: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    blackout_dates: list[date] = Field(
        default_factory=list, sa_column=Column(ARRAY(Date), nullable=False, server_default=text("'{}'"))
    )
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    updated_at: datetime | None = _timestamp(nullable=False, now=True)


class Destination(SQLModel, table=True):
    __tablename__ = "destination"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="destination_campaign_id_number_key"),)

    id: int | None = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()
    number: str = _text()
    variables: dict[str, Any] = _jsonb()
    timezone: str = _text()
    status: str = _text(default="pending")
    attempts_made: int = _int(default=0)
    next_attempt_at: datetime | None = _timestamp()
    outcome: str | None = _text(nullable=True)
    updated_at: datetime | None = _timestamp(nullable=False, now=True)
    run_no: int = _int(default=1)
    attempts_before_run: int = _int(default=0)


class CallAttempt(SQLModel, table=True):
    __tablename__ = "call_attempt"
    __table_args__ = (
        UniqueConstraint("destination_id", "attempt_no", name="call_attempt_destination_id_attempt_no_key"),
    )

    id: int | None = _pk()
    destination_id: int = _fk("destination.id", ondelete="CASCADE")
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    account_id: int = _fk("provider_account.id")
    attempt_no: int = _int()
    batch_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    status: str = _text(default="dialing")
    request_uuid: str | None = _text(nullable=True)
    call_uuid: str | None = _text(nullable=True)
    provider_status: str | None = _text(nullable=True)
    outcome: str | None = _text(nullable=True)
    hangup_cause: str | None = _text(nullable=True)
    error_message: str | None = _text(nullable=True)
    cost: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    sent_at: datetime | None = _timestamp()
    ring_at: datetime | None = _timestamp()
    answer_at: datetime | None = _timestamp()
    end_at: datetime | None = _timestamp()
    duration: int | None = _int(nullable=True)
    billed_duration: int | None = _int(nullable=True)
    lease_expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    opt_out_digits: str | None = _text(nullable=True)
    opted_out_at: datetime | None = _timestamp()
    run_no: int = _int(default=1)
    spoken_text: str | None = _text(nullable=True)


class CallEvent(SQLModel, table=True):
    __tablename__ = "call_event"
    __table_args__ = (
        UniqueConstraint("provider", "account_id", "event_key", name="call_event_account_event_key"),
    )

    id: int | None = _pk()
    provider: str = _text()
    account_id: int | None = _fk("provider_account.id", nullable=True)
    event_key: str = _text()
    kind: str = _text()
    batch_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, nullable=True))
    request_uuid: str | None = _text(nullable=True)
    call_uuid: str | None = _text(nullable=True)
    destination: str | None = _text(nullable=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    headers: dict[str, Any] = _jsonb()
    received_at: datetime | None = _timestamp(nullable=False, now=True)
    applied_at: datetime | None = _timestamp()
    attempt_id: int | None = _fk("call_attempt.id", nullable=True, ondelete="SET NULL")
    rejected_reason: str | None = _text(nullable=True)


class RejectedCallback(SQLModel, table=True):
    __tablename__ = "rejected_callback"

    id: int | None = _pk()
    provider: str = _text()
    account_id: int | None = _fk("provider_account.id", nullable=True, ondelete="CASCADE")
    kind: str = _text()
    reason: str = _text()
    body: str = _text()
    headers: dict[str, Any] = _jsonb()
    received_at: datetime | None = _timestamp(nullable=False, now=True)


class DncNumber(SQLModel, table=True):
    __tablename__ = "dnc_number"

    number: str = Field(sa_column=Column(Text, primary_key=True))
    reason: str | None = _text(nullable=True)
    added_at: datetime | None = _timestamp(nullable=False, now=True)


class AccountDncNumber(SQLModel, table=True):
    __tablename__ = "account_dnc_number"

    account_id: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"), primary_key=True
        )
    )
    number: str = Field(sa_column=Column(Text, primary_key=True))
    reason: str | None = _text(nullable=True)
    source: str = _text(default="operator")
    added_at: datetime | None = _timestamp(nullable=False, now=True)


class RejectedRow(SQLModel, table=True):
    __tablename__ = "rejected_row"

    id: int | None = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()
    raw_value: str = _text()
    reason: str = _text()
    detail: str | None = _text(nullable=True)


class ProviderBatch(SQLModel, table=True):
    __tablename__ = "provider_batch"

    batch_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid, primary_key=True))
    account_id: int = _fk("provider_account.id", ondelete="CASCADE")
    request_uuids: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    created_at: datetime | None = _timestamp(nullable=False, now=True)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    __table_args__ = (UniqueConstraint("key_hash", name="api_key_key_hash_key"),)

    id: int | None = _pk()
    name: str = _text()
    key_hash: str = _text()
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    revoked_at: datetime | None = _timestamp()


class AccountBudgetState(SQLModel, table=True):
    __tablename__ = "account_budget_state"

    account_id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, ForeignKey("provider_account.id", ondelete="CASCADE"), primary_key=True),
    )
    adaptive_cps: float | None = Field(default=None, sa_column=Column(Double, nullable=True))
    paused_until: datetime | None = _timestamp()
    updated_at: datetime | None = _timestamp(nullable=False, now=True)

class CampaignRun(SQLModel, table=True):
    __tablename__ = "campaign_run"
    __table_args__ = (UniqueConstraint("campaign_id", "run_no", name="campaign_run_campaign_id_run_no_key"),)

    id: int | None = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    run_no: int = _int()
    trigger: str = _text()
    only_outcomes: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text), nullable=True))
    destinations: int = _int(default=0)
    started_at: datetime | None = _timestamp(nullable=False, now=True)
    ends_at: datetime | None = _timestamp()
    finished_at: datetime | None = _timestamp()
    finish_reason: str | None = _text(nullable=True)


class CampaignSchedule(SQLModel, table=True):
    __tablename__ = "campaign_schedule"
    __table_args__ = (UniqueConstraint("campaign_id", name="campaign_schedule_campaign_id_key"),)

    id: int | None = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    cron: str = _text()
    timezone: str = _text()
    only_outcomes: list[str] | None = Field(default=None, sa_column=Column(ARRAY(Text), nullable=True))
    run_for_s: int | None = _int(nullable=True)
    until_at: datetime | None = _timestamp()
    next_run_at: datetime | None = _timestamp()
    enabled: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, server_default=text("true"))
    )
    last_note: str | None = _text(nullable=True)
    created_at: datetime | None = _timestamp(nullable=False, now=True)


class LoadWarning(SQLModel, table=True):
    __tablename__ = "load_warning"

    id: int | None = _pk()
    campaign_id: int = _fk("campaign.id", ondelete="CASCADE")
    line_no: int = _int()
    reason: str = _text()
    detail: str | None = _text(nullable=True)
