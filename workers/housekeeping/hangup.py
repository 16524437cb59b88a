"""`cancel --hangup`: end a cancelled campaign's live calls through each provider's hang-up API.

Cancelling stops new calls (campaigns.control.cancel); this asks the carriers to end the calls already
placed. Their final callbacks still arrive and are applied as usual (the applier never sends a destination
of a cancelled campaign back to retry_wait). A call whose ids have not come back yet is tried again for a
few passes; a provider without a hang-up API (TryVox: none documented) is counted, and its calls end at
their time limit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psycopg

from campaigns.accounts import AccountCredentials, load_account
from campaigns.states import AttemptStatus, sql_in
from workers.providers.base import ProviderAdapter
from workers.providers.errors import ProviderError
from workers.providers.registry import adapter_for

HANGUP_PASSES = 3
PASS_INTERVAL_S = 1.0  # between passes: ids of calls sent a moment ago arrive meanwhile

# Calls that may be live: accepted, ringing or answered, or sent with no answer yet from the carrier.
LIVE_ATTEMPTS = f"""
SELECT id, account_id, request_uuid, call_uuid FROM call_attempt
WHERE campaign_id = %s AND id <> ALL(%s)
  AND ({sql_in("status", {AttemptStatus.SENT, AttemptStatus.RINGING, AttemptStatus.ANSWERED})}
       OR (status = 'dialing' AND sent_at IS NOT NULL))
ORDER BY account_id, id"""


@dataclass
class HangupReport:
    requested: int = 0  # the carrier took the hang-up request
    already_ended: int = 0  # the carrier no longer knew the call
    without_id: int = 0  # still no id to name the call by after every pass
    unsupported: Counter[str] = field(default_factory=Counter)  # provider -> calls it cannot hang up
    errors: list[str] = field(default_factory=list)


def hang_up_live_calls(
    conn: psycopg.Connection,
    client: httpx.Client,
    campaign_id: int,
    *,
    passes: int = HANGUP_PASSES,
    sleep: Callable[[float], None] = time.sleep,
) -> HangupReport:
    """Ask each carrier to end the campaign's live calls; each call is asked once."""
    report = HangupReport()
    settled: set[int] = set()
    waiting_for_id: set[int] = set()
    for pass_no in range(passes):
        waiting_for_id.clear()
        rows = conn.execute(LIVE_ATTEMPTS, (campaign_id, list(settled))).fetchall()
        adapters: dict[int, tuple[AccountCredentials, ProviderAdapter]] = {}
        for attempt_id, account_id, request_uuid, call_uuid in rows:
            if account_id not in adapters:
                creds, _ = load_account(conn, account_id)
                adapters[account_id] = (creds, adapter_for(creds.provider))
            creds, adapter = adapters[account_id]
            if not adapter.traits.api.has_hangup:
                report.unsupported[creds.provider] += 1
                settled.add(attempt_id)
                continue
            if not (request_uuid or call_uuid):
                waiting_for_id.add(attempt_id)
                continue
            settled.add(attempt_id)
            try:
                if adapter.hang_up(client, creds, request_uuid, call_uuid):
                    report.requested += 1
                else:
                    report.already_ended += 1
            except ProviderError as exc:
                report.errors.append(f"attempt {attempt_id}: {exc}")
        if not waiting_for_id:
            break
        if pass_no < passes - 1:
            sleep(PASS_INTERVAL_S)
    report.without_id = len(waiting_for_id)
    return report
