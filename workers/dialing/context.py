"""What one dial-chunk task carries through its provider requests: the task's context (connection, HTTP
client, budgets, clock), the campaign with its account and adapter, the report they add to, and what one
request asks of the rest of the chunk (workers.dialing.chunk runs them)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg

from campaigns.accounts import AccountLimits
from campaigns.store import dial_store as store
from workers.dialing.accepted_calls import SentIds
from workers.dialing.circuit_breaker import AccountBreaker
from workers.providers.base import ProviderAdapter
from workers.providers.calls import AccountCredentials
from workers.providers.errors import Throttled
from workers.ratelimit import Budgets


@dataclass
class ChunkReport:
    """What one chunk task did, for logs and tests."""

    sent: int = 0
    handed_back: int = 0
    throttled: int = 0
    failed: int = 0
    ambiguous: int = 0
    skipped: int = 0
    dnc: int = 0
    undialable: int = 0  # ended as invalid: a destination kind the provider cannot dial
    errors: list[str] = field(default_factory=list)


@dataclass
class DialContext:
    conn: psycopg.Connection
    client: httpx.Client
    budgets: Budgets
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class ChunkDial:
    """Everything one chunk's requests share: the task's context, the campaign, its account and adapter,
    and the report they all add to."""

    ctx: DialContext
    campaign: store.CampaignForDial
    creds: AccountCredentials
    limits: AccountLimits
    adapter: ProviderAdapter
    report: ChunkReport
    breaker: AccountBreaker  # the account's circuit breaker, told each request's answer
    # One-destination requests whose attempts this chunk started together, by destination id, and the text
    # each call will speak (by attempt id).
    ahead: dict[int, store.StartedAttempt] = field(default_factory=dict)
    spoken: dict[int, str] = field(default_factory=dict)
    # The ids of requests sent and not yet recorded: written with the next request's mark, in its commit,
    # or when the chunk ends (workers.dialing.chunk_rows.record_unrecorded).
    unrecorded: list[SentIds] = field(default_factory=list)
    unrecorded_ids: list[str] = field(default_factory=list)
    # Ids recorded (committed) whose early callbacks have not been looked for yet, and since when.
    unchecked_ids: list[str] = field(default_factory=list)
    unchecked_since: float = 0.0

    def release(self, attempts: list[store.StartedAttempt]) -> None:
        """Free these attempts' concurrency slots."""
        self.ctx.budgets.release(self.creds.account_id, self.campaign.id, slot_members(attempts))

    def hand_back(self, ids: list[int], not_before: datetime | None) -> None:
        self.report.handed_back += store.hand_back(self.ctx.conn, ids, not_before)


@dataclass(frozen=True)
class RequestResult:
    """What one provider request asks of the rest of the chunk: go on (neither set), stop and hand the rest
    back until `stop_until`, or back off and try again after the carrier's 429 (`throttled`)."""

    stop_until: datetime | None = None
    throttled: Throttled | None = None


GO_ON = RequestResult()



def slot_members(started: list[store.StartedAttempt]) -> list[str]:
    return [a.destination.slot_member for a in started]
