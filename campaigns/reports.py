"""The reports the domain computes and every way in shows: a campaign's status (`dialer campaign status`,
the live view, `GET /campaigns/{id}`) and a load's outcome (`dialer campaign create`, `POST /campaigns`).

Each is defined once here, as a pydantic model, and the API answers with it: it subclasses a report only
to keep the schema name its OpenAPI document has always had and to add what it shows beside it. A field
whose JSON name differs from its name here carries the JSON name as its serialization alias.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, computed_field
from sqlmodel import Field

from campaigns.account_health import AccountHealth
from campaigns.models import CampaignBase
from campaigns.states import FINAL_DESTINATION


class CampaignStatus(CampaignBase):
    """Where a campaign stands: its columns, destinations per status, attempts per outcome, talk time, and
    its accounts' health."""

    by_status: dict[str, int] = Field(serialization_alias="destinations_by_status")
    attempts: int
    by_outcome: dict[str, int] = Field(serialization_alias="attempts_by_outcome")  # "-": no outcome yet
    throttled: int  # 429s met while dialing (not attempts): the campaign's throttled_count
    answered_seconds: int
    mean_duration_s: float | None = Field(serialization_alias="mean_answered_duration_s")
    # Its accounts in order (primary first), each with its circuit breaker and latest changes (issue 23).
    accounts: list[AccountHealth] = Field(default_factory=list)

    @computed_field(alias="destinations_finished")  # type: ignore[prop-decorator]
    @property
    def finished(self) -> int:
        return sum(count for status, count in self.by_status.items() if status in FINAL_DESTINATION)


class LoadReport(BaseModel):
    """The outcome of a committed load; the campaign it created is a draft."""

    model_config = ConfigDict(frozen=True)

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
    rows_with_warnings: int = 0  # loaded, but the message template names a column they leave empty
